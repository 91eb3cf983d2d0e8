/**
 * MuE over a split at several batch sizes, with and without exits: what `mue eval` measures,
 * as benchmark rows. The demo model (weights/ofa-tiny-demo) in MuE's decomposed layout on
 * data/shapes-eval, the authors' setting for the task against the plain model, at batch 1, 4 and
 * 16 (each sample deciding alone inside a batch).
 *
 *   npx tsx bench/eval.ts [--backends webgpu,cpu] [--tasks entail,caption] [--batches 1,4,16]
 *                         [--limit 32] [--image-size 256]
 *
 * The two settings take turns chunk by chunk (src/eval/evaluate.ts), after an untimed warm-up
 * call of each at the batch size, so that a shared machine's drift hits both alike. Rows go to
 * `bench/results/mue-eval-latest.json`, replacing the rows of the same task, backend, batch and
 * exits (so backends can run apart):
 *
 *   {op: "mue-eval", task, backend, batch, exits: "none" | "0.7/0.99/0.7" (image/text/decoder),
 *    accuracy (captions: CIDEr-D), retained, layers_fraction, ms_per_item, items_per_s,
 *    wall_saved, items, image_size}
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readCaptionSplit, readEntailmentSplit, type EvalTask, EVAL_TASKS } from '../src/eval/dataset.js';
import { type EvaluateOptions, type SettingResult, evaluateCaptions, evaluateEntailment } from '../src/eval/evaluate.js';
import { AUTHORS_THRESHOLDS, NO_EXIT_SETTING, thresholdsLabel } from '../src/eval/sweep.js';
import { settingsTable } from '../src/eval/table.js';
import { writeFileAtomically } from '../src/io/atomic-file.js';
import { type BackendName, OfaPipeline } from '../src/pipeline.js';
import { choices, positiveIntegers } from './flags.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const RESULTS = join(ROOT, 'bench/results/mue-eval-latest.json');

interface Row {
  op: 'mue-eval';
  task: EvalTask;
  backend: BackendName;
  batch: number;
  exits: string;
  accuracy: number;
  retained: number | null;
  layers_fraction: number;
  ms_per_item: number;
  items_per_s: number;
  wall_saved: number | null;
  items: number;
  image_size: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backends: { type: 'string', default: 'webgpu,cpu' },
      tasks: { type: 'string', default: 'entail' },
      batches: { type: 'string', default: '1,4,16' },
      limit: { type: 'string', default: '32' },
      'image-size': { type: 'string' },
    },
  });
  const backends = choices<BackendName>(values.backends, ['webgpu', 'cpu'], '--backends');
  const tasks = choices(values.tasks, EVAL_TASKS, '--tasks');
  const batches = positiveIntegers(values.batches, '--batches');
  const [limit] = positiveIntegers(values.limit, '--limit');
  const imageSize = values['image-size'] === undefined ? undefined : positiveIntegers(values['image-size'], '--image-size')[0];
  process.env.XDG_RUNTIME_DIR ??= '/tmp';

  const dir = join(ROOT, 'data/shapes-eval');
  const rows: Row[] = [];
  for (const backend of backends) {
    const pipeline = await OfaPipeline.load(join(ROOT, 'weights/ofa-tiny-demo'), { backend, imageSize, encoderMode: 'decomposed' });
    try {
      for (const task of tasks) {
        const authors = AUTHORS_THRESHOLDS[task];
        const settings = [NO_EXIT_SETTING, { name: `authors ${thresholdsLabel(authors)}`, thresholds: authors, origin: 'authors' as const }];
        for (const batch of batches) {
          const options: EvaluateOptions = { settings, batch };
          const results: SettingResult[] =
            task === 'entail'
              ? await evaluateEntailment(pipeline, await readEntailmentSplit(dir, { limit }), options)
              : await evaluateCaptions(pipeline, await readCaptionSplit(dir, { limit }), options);
          console.log(`\n${task}, ${backend}, batch ${batch}, ${results[0]!.items} items, ${pipeline.imageSize} px`);
          for (const line of settingsTable(results)) console.log(line);
          for (const r of results) {
            rows.push({
              op: 'mue-eval',
              task,
              backend,
              batch,
              exits: r.setting.thresholds === null ? 'none' : thresholdsLabel(r.setting.thresholds),
              accuracy: r.score,
              retained: r.retained ?? null,
              layers_fraction: r.layersFraction,
              ms_per_item: r.msPerItem,
              items_per_s: r.itemsPerSecond,
              wall_saved: r.wallSaved ?? null,
              items: r.items,
              image_size: pipeline.imageSize,
            });
          }
        }
      }
    } finally {
      pipeline.dispose();
    }
  }
  const key = (r: Row): string => `${r.task} ${r.backend} ${r.batch} ${r.exits}`;
  const merged = new Map<string, Row>();
  if (existsSync(RESULTS)) for (const r of JSON.parse(await readFile(RESULTS, 'utf8')) as Row[]) merged.set(key(r), r);
  for (const r of rows) merged.set(key(r), r);
  const text = `${JSON.stringify([...merged.values()], null, 1)}\n`;
  await writeFileAtomically(RESULTS, (write) => write(new TextEncoder().encode(text)));
  console.log(`\nwrote ${rows.length} rows to ${RESULTS}`);
}

await main();
