// COCO RLE masks in the browser: the API's "segmentation" ({size: [height, width], counts: string})
// decoded as pycocotools does (rleFrString). Each run length is a little-endian group of 5-bit
// characters (char code - 48; bit 0x20: another character follows; bit 0x10 of the last one: negative),
// and from the third run on a value is the difference to the run two before. Runs alternate
// background / object, column-major, starting with background. Values beyond 2^30 (a mask of over a
// billion pixels) are out of reach of JavaScript's 32-bit shifts, as the server never sends them.
// Loaded by the page before app.js; under Node (tests/serving/test_rle_js.py) it exports its functions.
"use strict";

function rleCounts(text) {
  const counts = [];
  let position = 0;
  while (position < text.length) {
    let value = 0, shift = 0, more = true;
    while (more) {
      const c = text.charCodeAt(position++) - 48;
      value |= (c & 0x1f) << shift;
      more = (c & 0x20) !== 0;
      shift += 5;
      if (!more && (c & 0x10)) value |= -1 << shift;
    }
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  return counts;
}

// {size: [h, w], counts} -> {height, width, data}: data[x * height + y] is 1 on the object (column-major).
function rleDecode(rle) {
  const [height, width] = rle.size;
  const data = new Uint8Array(height * width);
  let index = 0, object = false;
  for (const run of rleCounts(rle.counts)) {
    if (run < 0 || index + run > data.length) throw new Error("a mask's run lengths do not fit its size");
    if (object) data.fill(1, index, index + run);
    index += run;
    object = !object;
  }
  return { height, width, data };
}

if (typeof module !== "undefined") module.exports = { rleCounts, rleDecode };
