/** WGSL snippets of the grouped GEMM programs (batched_gemm_webgpu.ts): the tile schedule shared by both. */

/** The tile schedule (see the file comment). Defines findTile(tile) filling tileInfo = [expert, rowStart, rowEnd, mode]. */
export function scheduleSnippet(numExperts: number, wgs: number, tm: number): string {
  const parts = numExperts + 2;
  return `
    const NUM_PARTS = ${parts};
    const PARTS_PER_THREAD = ${Math.ceil(parts / wgs)};
    const SCHED_WG = ${wgs};
    const TILE_ROWS = ${tm};
    const MODE_IDLE = 0;
    const MODE_EXPERT = 1;
    const MODE_ZERO = 2;
    var<workgroup> schedScan : array<i32, SCHED_WG>;
    var<workgroup> tileInfo : array<i32, 4>;
    var<workgroup> wgShared : i32;

    fn partRows(p : i32, numRows : i32) -> vec2<i32> {
      var start = 0;
      var end = 0;
      if (p == 0) {
        end = offsets[0];
      } else if (p == NUM_PARTS - 1) {
        start = offsets[NUM_PARTS - 2];
        end = numRows;
      } else {
        start = offsets[p - 1];
        end = offsets[p];
      }
      start = clamp(start, 0, numRows);
      return vec2<i32>(start, clamp(end, start, numRows));
    }

    fn findTile(tile : i32, numRows : i32) {
      let lid = i32(localIndex);
      var tiles = 0;
      for (var q = 0; q < PARTS_PER_THREAD; q++) {
        let p = lid * PARTS_PER_THREAD + q;
        if (p < NUM_PARTS) {
          let pr = partRows(p, numRows);
          tiles += (pr.y - pr.x + TILE_ROWS - 1) / TILE_ROWS;
        }
      }
      if (lid == 0) { tileInfo[3] = MODE_IDLE; }
      schedScan[lid] = tiles;
      workgroupBarrier();
      for (var st = 1; st < SCHED_WG; st = st * 2) {
        var add = 0;
        if (lid >= st) { add = schedScan[lid - st]; }
        workgroupBarrier();
        schedScan[lid] = schedScan[lid] + add;
        workgroupBarrier();
      }
      let inclusive = schedScan[lid];
      if (tile >= inclusive - tiles && tile < inclusive) {
        var t = tile - (inclusive - tiles);
        for (var q = 0; q < PARTS_PER_THREAD; q++) {
          let p = lid * PARTS_PER_THREAD + q;
          if (p < NUM_PARTS && t >= 0) {
            let pr = partRows(p, numRows);
            let n = (pr.y - pr.x + TILE_ROWS - 1) / TILE_ROWS;
            if (t < n) {
              tileInfo[0] = p - 1;
              tileInfo[1] = pr.x + t * TILE_ROWS;
              tileInfo[2] = min(pr.x + (t + 1) * TILE_ROWS, pr.y);
              tileInfo[3] = select(MODE_EXPERT, MODE_ZERO, p == 0 || p == NUM_PARTS - 1);
            }
            t -= n;
          }
        }
      }
    }`;
}
