"""The glip-nano recipe: the README's "The shapes world" commands, replayed on paper, read only what
an earlier command wrote, and every glip-nano config says in its first two lines what it starts
from and what it produces."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from glip.training.checkpointing import checkpoint_name
from glip.training.train_config import TrainConfig, load_train_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("glip-nano-*.yaml"))
FINAL_MODEL = "model.safetensors"  # what ``glip train`` writes into output.dir at its last step
SHIPPED = "src/glip/weights/glip-nano.safetensors"
STAGES = ("stage1-shapes", "stage2-continue", "stage3-attributes", "stage4-texture", "stage5-fill")
NOT_IN_RECIPE = {"stage1-nofusion"}  # an earlier ablation, in no table of the README


def recipe_commands(readme: str) -> list[list[str]]:
    """The shell commands of the first bash block of "## The shapes world", one argv each
    (continuation lines joined, comments dropped, ``for VAR in ...; do CMD; done`` unrolled)."""
    section = readme.split("## The shapes world", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    joined = re.sub(r";\s*do\b\s*\n\s*", "; do ", joined)  # a loop written over two lines
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "for":
            loop = re.fullmatch(r"for (\w+) in (.+?); do (.+?); done", line.split("#")[0].strip())
            assert loop, f"unreadable loop in the recipe: {line}"
            name, values, body = loop.groups()
            commands += [shlex.split(body.replace(f"${name}", value)) for value in values.split()]
        else:
            commands.append(words)
    return commands


def option_values(argv: list[str], option: str) -> list[str]:
    """Every value given to ``option`` (repeated, or several after one ``--option``)."""
    values = []
    for i, word in enumerate(argv):
        if word == option:
            for value in argv[i + 1:]:
                if value.startswith("--"):
                    break
                values.append(value)
    return values


def config_inputs(config: TrainConfig) -> list[str]:
    """The paths a training run reads: its starting weights and its data."""
    paths = [p for p in (config.model.weights, config.model.init_from) if p]
    for dataset in config.data.datasets:
        paths += [dataset.annotations, dataset.images]
    return paths


def train_outputs(config: TrainConfig) -> list[str]:
    """The final model and the checkpoints a finished run leaves (the newest ``keep_last``)."""
    out, every, last = config.output.dir, config.output.checkpoint_every, config.train.max_steps
    steps = sorted({*range(every, last + 1, every), last})[-config.output.keep_last:]
    return [f"{out}/{FINAL_MODEL}", *(f"{out}/checkpoints/{checkpoint_name(step)}" for step in steps)]


def reads_and_writes(argv: list[str]) -> tuple[list[str], list[str]]:
    """What one recipe command reads and writes (paths relative to the repository root)."""
    assert argv[0] == "glip", f"the recipe runs glip commands only, found: {shlex.join(argv)}"
    command = argv[1:3] if argv[1] == "shapes" else argv[1:2]
    if command == ["shapes", "generate"]:
        return [], [f"{option_values(argv, '--out')[0]}/{option_values(argv, '--split')[0]}"]
    if command == ["train"]:
        config = load_train_config(ROOT / argv[2])
        return config_inputs(config), train_outputs(config)
    if command == ["convert"]:
        return [argv[2]], [argv[3]]
    if command == ["shapes", "texture-pretrain"]:
        reads = option_values(argv, "--weights") + option_values(argv, "--grounding") + option_values(argv, "--val")
        return reads, option_values(argv, "--out")
    if command == ["shapes", "report"]:
        return [label_weights.split("=", 1)[1] for label_weights in option_values(argv, "--model")], []
    raise AssertionError(f"unknown command in the recipe: {shlex.join(argv)}")


def replay(readme: str) -> tuple[set[str], list[str]]:
    """Replay the recipe on paper -> (every path written, the configs trained in order); an
    AssertionError names the first command that reads a path no earlier command wrote."""
    written: set[str] = set()
    trained = []
    for argv in recipe_commands(readme):
        reads, writes = reads_and_writes(argv)
        for path in reads:
            assert any(path == w or path.startswith(w + "/") for w in written), (
                f"`{shlex.join(argv)}` reads {path}, which no earlier command writes")
        written |= set(writes)
        if argv[1] == "train":
            trained.append(Path(argv[2]).stem.removeprefix("glip-nano-"))
    return written, trained


def test_every_recipe_command_reads_only_what_an_earlier_one_wrote() -> None:
    written, trained = replay((ROOT / "README.md").read_text())
    assert SHIPPED in written, "the recipe ends with the shipped model"
    assert [name for name in trained if name in STAGES] == list(STAGES), "the stages run in their order"
    configs = {path.stem.removeprefix("glip-nano-") for path in CONFIGS}
    assert configs - NOT_IN_RECIPE == set(trained), "every glip-nano config but the stage-1 ablation is in the recipe"


def test_the_replay_catches_a_stage_reading_what_nobody_wrote() -> None:
    readme = (ROOT / "README.md").read_text()
    handover = "runs/glip-nano-stage2/checkpoints/step_00000800.pt runs/glip-nano-stage2.safetensors"
    assert handover in readme
    broken = readme.replace(handover, "runs/glip-nano-stage2/checkpoints/step_00000800.pt runs/stage2.safetensors")
    with pytest.raises(AssertionError, match="stage3-attributes.yaml` reads runs/glip-nano-stage2.safetensors"):
        replay(broken)
    late = readme.replace("step_00000800.pt runs/glip-nano-stage2", "step_00001400.pt runs/glip-nano-stage2")
    with pytest.raises(AssertionError, match="step_00001400.pt, which no earlier command writes"):
        replay(late)  # stage 2 runs 1300 steps


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_opens_with_what_it_starts_from_and_what_it_produces(path: Path) -> None:
    config = load_train_config(path)  # every key and value is valid
    first, second = path.read_text().splitlines()[:2]
    assert first.startswith("# Starts from: ") and second.startswith("# Produces: ")
    start = config.model.weights or config.model.init_from
    if start is None:
        assert first.startswith("# Starts from: random weights")
    else:
        assert first.startswith(f"# Starts from: {start} ")
    assert second.startswith(f"# Produces: {config.output.dir}/")
    produced = second.removeprefix("# Produces: ").split()[0].rstrip(",")
    assert produced in train_outputs(config), f"{path.name}: a run does not leave {produced}"


def test_runs_are_named_after_their_config() -> None:
    for path in CONFIGS:
        stage = re.match(r"glip-nano-(stage\d|control)", path.stem).group(1)
        out = load_train_config(path).output.dir
        assert out.startswith(f"runs/glip-nano-{stage}"), f"{path.name} writes {out}"
    outputs = [load_train_config(path).output.dir for path in CONFIGS]
    assert len(set(outputs)) == len(outputs), "two configs write the same run folder"
