/**
 * Decodes the image fuzz targets' mutated cases with our decoders and with Pillow 9.4, and counts
 * where they agree: both refuse, both decode to the same bytes, or not.
 *
 *   npx tsx scripts/pillow-differential.ts [cases per format, default 600] [seed, default 1]
 *
 * Needs Pillow 9.4.0 and numpy for /usr/bin/python3 (Debian bookworm: python3-pil, python3-numpy).
 * Pillow's libjpeg-turbo uses x86 SIMD, whose IDCT wraps around on the huge coefficients of
 * corrupt JPEG data where the C IDCT (ours, in WebAssembly) does not; JSIMD_FORCENONE=1 in the
 * environment turns Pillow's SIMD off for a like-for-like comparison.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeImage } from '../src/image/decode.js';
import { CaseSource } from '../test/fuzz/cases.js';
import { targets } from '../test/fuzz/targets/images.js';

const COMPARE = String.raw`
import collections, json, os, sys
import numpy as np
from PIL import Image
folder = sys.argv[1]
counts = collections.defaultdict(collections.Counter)
for name, ours in json.load(open(os.path.join(folder, 'ours.json'))).items():
    try:
        pillow = np.asarray(Image.open(os.path.join(folder, name)).convert('RGB')).reshape(-1)
    except Exception:
        pillow = None
    if pillow is None or ours is None:
        outcome = 'both refuse' if pillow is None and ours is None else ('only Pillow decodes' if ours is None else 'only ours decodes')
    else:
        mine = np.fromfile(os.path.join(folder, name + '.rgb'), np.uint8)
        outcome = 'same bytes' if mine.size == pillow.size and (mine == pillow).all() else 'different bytes'
    counts[name.split('-')[0]][outcome] += 1
print(json.dumps(counts))
`;

const casesPerFormat = Number(process.argv[2] ?? 600);
const seed = Number(process.argv[3] ?? 1);
const folder = mkdtempSync(join(tmpdir(), 'pillow-differential-'));
try {
  const ours: Record<string, { width: number; height: number } | null> = {};
  for (const target of targets) {
    const source = new CaseSource(target, seed);
    for (let i = 0; i < casesPerFormat; i++) {
      const name = `${target.name}-${i}`;
      const { bytes } = source.caseAt(source.handmadeCount + i);
      writeFileSync(join(folder, name), bytes);
      try {
        const { width, height, data } = await decodeImage(bytes, name);
        writeFileSync(join(folder, `${name}.rgb`), data);
        ours[name] = { width, height };
      } catch {
        ours[name] = null;
      }
    }
  }
  writeFileSync(join(folder, 'ours.json'), JSON.stringify(ours));
  const counts = JSON.parse(execFileSync('/usr/bin/python3', ['-c', COMPARE, folder], { encoding: 'utf8' })) as Record<string, Record<string, number>>;
  console.log(`seed ${seed}, ${casesPerFormat} mutated cases per format${process.env.JSIMD_FORCENONE ? ', Pillow without SIMD' : ''}:`);
  for (const [format, outcomes] of Object.entries(counts)) console.log(`  ${format}: ${JSON.stringify(outcomes)}`);
} finally {
  rmSync(folder, { recursive: true, force: true });
}
