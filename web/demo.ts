/**
 * The demo page: OFA with MuE early exits in the browser. It uses the library bundle exactly as an
 * embedding page would (`web/build.ts` maps the import below to `dist/mue.browser.js`): the default
 * model and tokenizer are fetched from beside the bundle, the checkpoint by range requests.
 *
 * Each request runs twice — without exits, then with the sliders' thresholds — and the page shows
 * both results side by side, with the exit report of the second: per stream (image, text, each
 * decoded token) the cosine similarity after every layer against its threshold, where it stopped,
 * the layers run, the compute saved and the wall time.
 *
 * `window.mueDemo` exposes the state to the browser tests (test/browser/).
 */
import {
  type BackendName,
  type CaptionResult,
  type EntailmentResult,
  type ExitSettings,
  type ImageInput,
  type PipelineExitReport,
  type StreamReport,
  BOS_ID,
  EOS_ID,
  OfaPipeline,
  PAD_ID,
  UNK_ID,
  WebGpuBackend,
  createWebGpuBackend,
} from '../src/index.js';

// ---- page state -------------------------------------------------------------------------------

type Task = 'caption' | 'entail';

interface Scene {
  image: string;
  hypothesis: string;
  caption: string;
}

interface RunRecord {
  task: Task;
  exits: ExitSettings;
  full: CaptionResult | EntailmentResult;
  early: CaptionResult | EntailmentResult;
}

interface DemoState {
  /** Resolves once the model is loaded (rejects with the reason it could not be). */
  ready: Promise<void>;
  backend?: BackendName;
  adapter?: string;
  /** The last completed request. */
  last?: RunRecord;
  /** The last failure shown to the user. */
  error?: string;
}

declare global {
  interface Window {
    mueDemo: DemoState;
  }
}

const $ = <T extends Element = HTMLElement>(selector: string): T => {
  const element = document.querySelector<T>(selector);
  if (!element) throw new Error(`demo page: no element ${selector}`);
  return element;
};

const SVG_NS = 'http://www.w3.org/2000/svg';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

function svg(tag: string, attributes: Record<string, string | number> = {}): SVGElement {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  return element;
}

const percent = (x: number): string => `${(100 * x).toFixed(1)}%`;
const seconds = (ms: number): string => (ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`);
const megabytes = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

// ---- the model --------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
let pipeline: OfaPipeline | undefined;
let image: ImageInput | undefined;
let task: Task = 'caption';
let busy = false;
/** Requests completed: the first one's times include compiling the kernels it needed. */
let runs = 0;

function setStatus(text: string, kind: 'info' | 'error' = 'info'): void {
  const status = $('#status');
  status.textContent = text;
  status.dataset['kind'] = kind;
  status.hidden = text === '';
}

/**
 * `?backend=cpu` runs the readable CPU backend (also the fallback without `navigator.gpu`);
 * `?adapter=compatibility` asks for a compatibility-mode adapter (Chromium on OpenGL ES).
 */
async function loadModel(): Promise<void> {
  const useCpu = params.get('backend') === 'cpu' || !('gpu' in navigator);
  const backend = useCpu
    ? 'cpu'
    : params.get('adapter') === 'compatibility'
      ? await createWebGpuBackend({ adapter: { featureLevel: 'compatibility' } })
      : 'webgpu';
  const bar = $<HTMLProgressElement>('#load-progress');
  const label = $('#load-label');
  $('#loading').hidden = false;
  try {
    pipeline = await OfaPipeline.load(undefined, {
      backend,
      onProgress: ({ loadedBytes, totalBytes }) => {
        bar.max = totalBytes;
        bar.value = loadedBytes;
        label.textContent = `Loading the demo model · ${megabytes(loadedBytes)} of ${megabytes(totalBytes)}`;
      },
    });
  } finally {
    $('#loading').hidden = true;
  }
  window.mueDemo.backend = pipeline.backend.name;
  const chip = $('#adapter');
  if (pipeline.backend instanceof WebGpuBackend) {
    const { adapterDescription, f16, subgroups, subgroupShuffle } = pipeline.backend.capabilities;
    window.mueDemo.adapter = adapterDescription;
    chip.textContent = `WebGPU · ${adapterDescription}`;
    chip.title = `shader-f16: ${f16 ? 'yes' : 'no'} · subgroups: ${subgroups ? 'yes' : subgroupShuffle ? 'shuffles' : 'no'}`;
  } else {
    chip.textContent = 'CPU backend (no WebGPU in this browser)';
    chip.dataset['kind'] = 'warn';
  }
  const { config, imageSize } = pipeline;
  $('#model-note').textContent =
    `OFA-tiny architecture, random weights (${config.encoderLayers}+${config.decoderLayers} layers, ${imageSize}×${imageSize} input): ` +
    'captions are well-formed nonsense, but every stage runs for real.';
}

// ---- image input ------------------------------------------------------------------------------

function showImage(source: ImageInput, previewUrl: string, reference?: Scene): void {
  image = source;
  const preview = $<HTMLImageElement>('#preview');
  preview.src = previewUrl;
  $('#drop').classList.add('has-image');
  $('#reference').textContent = reference ? `Reference caption: “${reference.caption}”` : '';
  if (reference) $<HTMLInputElement>('#hypothesis').value = reference.hypothesis;
  for (const button of document.querySelectorAll<HTMLElement>('.scene')) {
    button.classList.toggle('selected', reference !== undefined && button.dataset['image'] === reference.image);
  }
  updateRunButton();
}

function useFile(file: File): void {
  showImage(file, URL.createObjectURL(file));
}

async function loadScenes(): Promise<void> {
  const base = new URL('../data/shapes-eval/', location.href);
  const lines = (await (await fetch(new URL('items.jsonl', base))).text()).split('\n').filter((line) => line.trim() !== '');
  // The first scenes with distinct hypothesis kinds read as a varied gallery.
  const scenes = lines.slice(0, 10).map((line) => JSON.parse(line) as Scene);
  const gallery = $('#scenes');
  for (const scene of scenes) {
    const url = new URL(scene.image, base);
    const button = el('button', { class: 'scene', type: 'button', 'data-image': scene.image, title: scene.caption }, el('img', { src: url.href, alt: scene.caption }));
    button.addEventListener('click', () => showImage(url, url.href, scene));
    gallery.append(button);
  }
  const photo = new URL('../test/fixtures/preprocess/photo-97x61.png', location.href);
  const button = el('button', { class: 'scene', type: 'button', 'data-image': 'photo-97x61.png', title: 'photo-97x61.png (a test fixture)' }, el('img', { src: photo.href, alt: 'test photo' }));
  button.addEventListener('click', () => showImage(photo, photo.href, { image: 'photo-97x61.png', hypothesis: 'there is a dog', caption: '(none: a test photo)' }));
  gallery.append(button);
  const first = scenes[0];
  if (first) showImage(new URL(first.image, base), new URL(first.image, base).href, first);
}

function wireImageInput(): void {
  const drop = $('#drop');
  const input = $<HTMLInputElement>('#file');
  input.addEventListener('change', () => {
    const file = input.files?.[0];
    if (file) useFile(file);
  });
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('dragging');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('dragging'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('dragging');
    const file = event.dataTransfer?.files[0];
    if (file) useFile(file);
  });
}

// ---- controls ---------------------------------------------------------------------------------

const SLIDERS = ['image', 'text', 'decoder'] as const;

/** The authors' settings (mue-spec.md) and one that shows skipping on the random-weight model. */
const PRESETS: Record<string, Record<(typeof SLIDERS)[number], number>> = {
  caption: { image: 0.99, text: 0.7, decoder: 0.9 },
  snli: { image: 0.7, text: 0.99, decoder: 0.7 },
  eager: { image: 0.85, text: 0.85, decoder: 0.86 },
};

function thresholds(): ExitSettings {
  const value = (name: string): number => Number($<HTMLInputElement>(`#exit-${name}`).value);
  return { image: value('image'), text: value('text'), decoder: value('decoder') };
}

function setThresholds(values: Record<string, number>): void {
  for (const name of SLIDERS) {
    const slider = $<HTMLInputElement>(`#exit-${name}`);
    slider.value = String(values[name]);
    slider.dispatchEvent(new Event('input'));
  }
}

function wireControls(): void {
  for (const name of SLIDERS) {
    const slider = $<HTMLInputElement>(`#exit-${name}`);
    const output = $(`#exit-${name}-value`);
    const show = (): void => {
      output.textContent = Number(slider.value).toFixed(2);
    };
    slider.addEventListener('input', show);
    show();
  }
  for (const button of document.querySelectorAll<HTMLElement>('[data-preset]')) {
    button.addEventListener('click', () => setThresholds(PRESETS[button.dataset['preset']!]!));
  }
  for (const button of document.querySelectorAll<HTMLElement>('[data-task]')) {
    button.addEventListener('click', () => {
      task = button.dataset['task'] as Task;
      for (const other of document.querySelectorAll<HTMLElement>('[data-task]')) other.classList.toggle('active', other === button);
      $('#hypothesis-row').hidden = task !== 'entail';
      $('#beam-row').hidden = task !== 'caption';
      updateRunButton();
    });
  }
  $('#run').addEventListener('click', () => void run());
}

function updateRunButton(): void {
  const button = $<HTMLButtonElement>('#run');
  button.textContent = busy ? 'Running…' : task === 'caption' ? 'Caption the image' : 'Test the hypothesis';
  button.disabled = busy || !pipeline || !image;
}

// ---- running ----------------------------------------------------------------------------------

async function runOnce(exits: ExitSettings | false): Promise<CaptionResult | EntailmentResult> {
  if (!pipeline || !image) throw new Error('no model or no image');
  if (task === 'caption') {
    const beamSize = Number($<HTMLSelectElement>('#beam').value);
    return pipeline.caption(image, { beamSize, exits });
  }
  const hypothesis = $<HTMLInputElement>('#hypothesis').value;
  return pipeline.entail(image, hypothesis, { exits });
}

async function run(): Promise<void> {
  if (busy) return;
  busy = true;
  updateRunButton();
  setStatus('');
  $('#results').dataset['state'] = 'running';
  try {
    const exits = thresholds();
    setStatus('Running without exits…');
    const full = await runOnce(false);
    setStatus('Running with early exits…');
    const early = await runOnce(exits);
    setStatus('');
    const record: RunRecord = { task, exits, full, early };
    window.mueDemo.last = record;
    render(record);
    $('#results').dataset['state'] = 'done';
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    window.mueDemo.error = message;
    setStatus(message, 'error');
    $('#results').dataset['state'] = 'error';
  } finally {
    busy = false;
    updateRunButton();
  }
}

// ---- results ----------------------------------------------------------------------------------

function answerOf(result: CaptionResult | EntailmentResult): string {
  return 'text' in result ? result.text || '(empty caption)' : `${result.label} (${result.answer.trim()})`;
}

function resultCard(title: string, result: CaptionResult | EntailmentResult, layers: string, saved: string, kind: string): HTMLElement {
  const body = el('p', { class: 'answer' }, answerOf(result));
  const facts = el('dl', { class: 'facts' });
  const fact = (name: string, value: string): void => {
    facts.append(el('dt', {}, name), el('dd', {}, value));
  };
  fact('Wall time', seconds(result.timing.totalMs));
  fact('Layers run', layers);
  fact('Compute saved', saved);
  const card = el('article', { class: `result ${kind}` }, el('h3', {}, title), body, facts);
  if ('probabilities' in result) card.append(probabilityBars(result));
  return card;
}

function probabilityBars(result: EntailmentResult): HTMLElement {
  const list = el('div', { class: 'probabilities' });
  for (const [label, p] of Object.entries(result.probabilities)) {
    const bar = el('span', { class: 'bar' });
    bar.style.width = percent(p);
    list.append(el('div', { class: `probability${label === result.label ? ' chosen' : ''}` }, el('span', { class: 'name' }, label), el('span', { class: 'track' }, bar), el('span', { class: 'value' }, percent(p))));
  }
  return list;
}

function layerSummary(report: PipelineExitReport): string {
  const encoder = report.encoder.filter((s) => s.stream !== 'joint').map((s) => `${s.stream} ${mean(s.layersRun).toFixed(0)}/${s.layers}`);
  const decoderLayers = report.decoder.flatMap((s) => s.layersRun);
  const layers = report.decoder[0]?.layers ?? 0;
  return `${encoder.join(', ')}; decoder ${mean(decoderLayers).toFixed(2)}/${layers}`;
}

const mean = (values: readonly number[]): number => (values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length);

function render({ task: runTask, full, early }: RunRecord): void {
  const report = early.exitReport;
  if (!report) throw new Error('the exit run returned no exit report');
  const same = runTask === 'caption' ? (full as CaptionResult).text === (early as CaptionResult).text : (full as EntailmentResult).label === (early as EntailmentResult).label;
  const speedup = full.timing.totalMs / early.timing.totalMs;
  runs++;
  const timeBadge =
    runs === 1
      ? 'first run: both times include compiling kernels; run again to compare them'
      : `wall time ×${(speedup >= 1 ? speedup : 1 / speedup).toFixed(2)} ${speedup >= 1 ? 'faster' : 'slower'} with exits`;
  const compare = $('#compare');
  compare.replaceChildren(
    resultCard('With early exits', early, layerSummary(report), percent(report.computeSaved), 'early'),
    resultCard('Without exits', full, 'every layer', '—', 'full'),
  );
  $('#verdict').replaceChildren(
    el('span', { class: `badge ${same ? 'ok' : 'differs'}` }, same ? (runTask === 'caption' ? 'Same caption' : 'Same answer') : runTask === 'caption' ? 'Caption differs' : 'Answer differs'),
    el('span', { class: 'badge' }, `${percent(report.computeSaved)} of layer compute skipped`),
    el('span', { class: 'badge' }, timeBadge),
  );
  renderReport(report, runTask === 'caption' ? (early as CaptionResult).tokens : []);
  $('#results').hidden = false;
  $('#empty').hidden = true;
}

const SPECIAL_TOKENS = new Map([
  [BOS_ID, '<s>'],
  [PAD_ID, '<pad>'],
  [EOS_ID, '</s>'],
  [UNK_ID, '<unk>'],
]);

/** Token `step` of the caption as text, for the decoder rows' labels. */
function tokenLabel(tokens: readonly number[], step: number): string {
  const id = tokens[step];
  if (id === undefined || !pipeline) return '';
  return SPECIAL_TOKENS.get(id) ?? (pipeline.tokenizer.decode([id]).trim() || '␣');
}

function renderReport(report: PipelineExitReport, tokens: readonly number[]): void {
  const { settings } = report;
  const rows = $('#report-rows');
  rows.replaceChildren();
  const section = (title: string): void => {
    rows.append(el('tr', { class: 'section' }, el('th', { colspan: '4' }, title)));
  };
  section(`Encoder · ${report.encoderMode === 'decomposed' ? 'image and text as two streams' : 'one joint stream; each modality stops on its own'}`);
  for (const stream of report.encoder) {
    if (stream.stream === 'joint') continue;
    const threshold = stream.stream === 'image' ? settings.image : settings.text;
    rows.append(streamRow(stream.stream === 'image' ? 'Image' : 'Text', '', stream, threshold));
  }
  const joint = report.encoder.find((s) => s.stream === 'joint');
  if (joint) rows.append(el('tr', { class: 'note' }, el('td', { colspan: '4' }, `The joint encoder ran ${mean(joint.layersRun).toFixed(0)} of ${joint.layers} layers (until both modalities stopped).`)));
  section(report.decoder.length === 1 && report.decoder[0]!.tokens > 1 ? 'Decoder · one pass over the prompt' : `Decoder · each generated token, ${report.decoder[0]?.layersRun.length ?? 0} beam(s)`);
  report.decoder.forEach((stream, step) => {
    const name = stream.tokens > 1 ? `Prompt (${stream.tokens} tokens)` : `Token ${step + 1}`;
    rows.append(streamRow(name, stream.tokens > 1 ? '' : tokenLabel(tokens, step), stream, report.decoderThresholds[step] ?? settings.decoder));
  });
  $('#report-summary').textContent =
    `${percent(report.computeSaved)} of the layer compute skipped (token-weighted: the paper's expected time reduction); ` +
    `wall time ${seconds(report.wallMs)}.`;
}

const TRACE = { width: 260, height: 56, left: 8, right: 8, top: 6, bottom: 14 };

/** One stream's row: its name, the similarity trace, the threshold and the layers it ran. */
function streamRow(name: string, detail: string, stream: StreamReport, threshold: number): HTMLTableRowElement {
  const layersRun = mean(stream.layersRun);
  const exited = stream.layersRun.some((n) => n < stream.layers);
  const label = el('td', { class: 'stream' }, el('span', { class: 'stream-name' }, name));
  if (detail) label.append(el('span', { class: 'token' }, detail));
  const runs = stream.layersRun.length > 1 ? `${layersRun.toFixed(1)}` : `${layersRun}`;
  return el(
    'tr',
    { class: exited ? 'exited' : 'full' },
    label,
    el('td', { class: 'trace' }, trace(stream, threshold)),
    el('td', { class: 'threshold' }, threshold > 1 ? 'never' : threshold.toFixed(3)),
    el('td', { class: 'layers' }, el('span', { class: 'run' }, runs), ` / ${stream.layers}`, layerPips(stream)),
  );
}

/** Little squares, one per layer: filled when (on average) run. */
function layerPips(stream: StreamReport): HTMLElement {
  const pips = el('span', { class: 'pips' });
  const run = mean(stream.layersRun);
  for (let layer = 1; layer <= stream.layers; layer++) {
    pips.append(el('span', { class: layer <= Math.round(run) ? 'pip on' : 'pip' }));
  }
  return pips;
}

/**
 * The similarity after each layer, one line per sample (beam), against the threshold line; the
 * layer a sample stopped at is marked, the layers it skipped are shaded.
 */
function trace(stream: StreamReport, threshold: number): SVGElement {
  const { width, height, left, right, top, bottom } = TRACE;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' });
  const layers = stream.layers;
  const values = stream.similarities.flat().filter(Number.isFinite);
  const low = Math.min(0.4, ...values, threshold <= 1 ? threshold : 1);
  const x = (layer: number): number => left + ((layer - 0.5) / layers) * (width - left - right);
  const y = (value: number): number => top + (1 - (value - low) / (1 - low)) * (height - top - bottom);
  const columnWidth = (width - left - right) / layers;
  const deepest = Math.max(...stream.layersRun, 0);
  for (let layer = 1; layer <= layers; layer++) {
    root.append(svg('rect', { x: x(layer) - columnWidth / 2 + 1, y: top, width: columnWidth - 2, height: height - top - bottom, class: layer <= deepest ? 'column' : 'column skipped' }));
    const tick = svg('text', { x: x(layer), y: height - 3, class: 'tick' });
    tick.textContent = `L${layer}`;
    root.append(tick);
  }
  if (threshold <= 1) root.append(svg('line', { x1: left, x2: width - right, y1: y(threshold), y2: y(threshold), class: 'threshold' }));
  stream.layersRun.forEach((run, sample) => {
    const points = Array.from({ length: run }, (_, i) => stream.similarities[i]?.[sample] ?? NaN)
      .map((value, i) => [x(i + 1), y(value)] as const)
      .filter(([, py]) => Number.isFinite(py));
    root.append(svg('polyline', { points: points.map((p) => p.join(',')).join(' '), class: 'line' }));
    points.forEach(([px, py], i) => {
      const stopped = i === run - 1 && run < layers;
      root.append(svg('circle', { cx: px, cy: py, r: stopped ? 4 : 2.5, class: stopped ? 'point exit' : 'point' }));
    });
  });
  return root;
}

// ---- start ------------------------------------------------------------------------------------

window.mueDemo = { ready: Promise.resolve() };
wireImageInput();
wireControls();
updateRunButton();
window.mueDemo.ready = (async () => {
  await loadScenes().catch((error: unknown) => setStatus(`cannot load the shipped scenes: ${String(error)}`, 'error'));
  try {
    await loadModel();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    window.mueDemo.error = message;
    setStatus(`The model could not be loaded: ${message}`, 'error');
    throw error;
  } finally {
    updateRunButton();
  }
})();
window.mueDemo.ready.catch(() => {});
