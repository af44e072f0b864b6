/** WGSL snippets of the grouped GEMM programs (batched_gemm_webgpu.ts): the tile schedule shared by both, and loads. */

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

/** Tiled program: stage the lhs tile (TM rows x TK) into As, transposed, with vec4 loads when K % 4 == 0. */
export function tiledLhsLoad(lhsVec: number): string {
  return lhsVec === 4 ? `
        for (var idx = lid; idx < TM * TK / 4; idx += WGS) {
          let m = idx / (TK / 4);
          let kq = idx % (TK / 4);
          let r = rowStart + m;
          let k = k0 + kq * 4;
          var v = vec4<f32>(0.0);
          if (r < rowEnd && k < K) { v = lhs[(r * K + k) / 4]; }
          As[(kq * 4) * TM + m] = v.x;
          As[(kq * 4 + 1) * TM + m] = v.y;
          As[(kq * 4 + 2) * TM + m] = v.z;
          As[(kq * 4 + 3) * TM + m] = v.w;
        }` : `
        for (var idx = lid; idx < TM * TK; idx += WGS) {
          let m = idx / TK;
          let kk = idx % TK;
          let r = rowStart + m;
          let k = k0 + kk;
          var v = 0.0;
          if (r < rowEnd && k < K) { v = lhs[r * K + k]; }
          As[kk * TM + m] = v;
        }`;
}

/**
 * Tiled program: stage the rhs tile (TK x TNV vectors) into Bs, from [E,K,N] or the transposed [E,N,K]; with the
 * SwiGLU epilogue the tile's first half holds gate columns and its second half the matching up columns.
 */
export function tiledRhsLoad(transposeRhs: boolean, swiglu: boolean, vec: number, vt: string): string {
  const storeB = vec === 4 ? 'Bs[kk * TNV + nn / 4][nn % 4] = v;' : 'Bs[kk * TNV + nn] = v;';
  return transposeRhs ? `
        for (var idx = lid; idx < TK * TNV * VEC; idx += WGS) {
          let nn = idx / TK;
          let kk = idx % TK;
          let n = colTile * TNV * VEC + nn;
          let k = k0 + kk;
          var v = 0.0;
          if (k < K && n < N) { v = rhs[(expert * N + n) * K + k]; }
          ${storeB}
        }` : `
        for (var idx = lid; idx < TK * TNV; idx += WGS) {
          let kk = idx / TNV;
          let nv = idx % TNV;
          let k = k0 + kk;
          ${swiglu ? `
          // First half of the tile: gate columns; second half: the matching up columns.
          let logical = colTile * (TNV / 2) + nv % (TNV / 2);
          let n = select(logical, NV / 2 + logical, nv >= TNV / 2);
          let colOk = logical < NV / 2;` : `
          let n = colTile * TNV + nv;
          let colOk = n < NV;`}
          var v = ${vt}(0.0);
          if (k < K && colOk) { v = rhs[(expert * K + k) * NV + n]; }
          Bs[idx] = v;
        }`;
}
