/**
 * The library's high-level API: an OFA checkpoint loaded once onto one backend, answering
 * captioning (ofa-arch.md §7.1) and visual entailment (§7.3) requests from image files or bytes.
 *
 *   const ofa = await OfaPipeline.load('weights/my-ofa', { backend: 'webgpu' });
 *   const { text } = await ofa.caption('photo.jpg');
 *   const { label } = await ofa.entail('photo.jpg', 'two dogs play in the snow');
 *   ofa.dispose();
 *
 * MuE early exits (mue-spec.md) per request or as the pipeline's default — `exits: { image: 0.99,
 * text: 0.7, decoder: 0.9 }` — add `exitReport` to the result: the layers each encoder stream and
 * each decoded token ran, the share of layer compute saved, and the wall time. Without `exits`
 * the plain model runs, with no checks.
 *
 * A pipeline owns its model (no cache is shared between pipelines, so `dispose` frees exactly
 * what `load` created); a second backend means a second pipeline. Requests on one pipeline run
 * one after another: their timings then measure that request alone.
 */
import type { Backend } from './backend/backend.js';
import { CpuBackend } from './backend/cpu/cpu-backend.js';
import { beamSearchBatch, maxGenerationLength, type BeamSearchOptions } from './generate/beam-search.js';
import {
  CAPTION_PROMPT,
  ENTAILMENT_ANSWERS,
  captionPostprocess,
  entailmentPrompt,
  entailmentTruncations,
  readEntailment,
  type EntailmentAnswer,
  type EntailmentLabel,
  type EntailmentTruncation,
} from './generate/tasks.js';
import { preprocessImage, resizeBicubic, type RgbImage, toModelInput } from './image/preprocess.js';
import type { EncoderMode, OfaConfig } from './models/ofa/config.js';
import type { EncoderOutput } from './models/ofa/encoder.js';
import { describeNonFinite, diagnoseNonFinite } from './models/ofa/diagnose.js';
import { OfaModel, type OfaModelFiles } from './models/ofa/model.js';
import { resnetOutputSize } from './models/ofa/resnet.js';
import { OfaStepDecoder } from './models/ofa/step-decoder.js';
import type { LoadProgress } from './models/ofa/weights.js';
import { type CacheFill, ExitingStepDecoder } from './mue/decoder-exits.js';
import { encodeBatchWithExits } from './mue/encoder-exits.js';
import type { DecisionScope, DecisionSite } from './mue/exit.js';
import { decodeFullWithExits } from './mue/full-pass-exits.js';
import { type ExitReport, type StreamReport, exitReport, reportOfRows } from './mue/report.js';
import type { Tensor } from './tensor.js';
import { OfaTokenizer } from './text/bpe.js';
import { DEFAULT_MODEL } from './assets.js';
import { fileErrorReason } from './io/byte-source.js';
import { type FileLocation, FileReadError, childOf, exists, isFetched, isLocation, locationLabel, parentOf, readBytes, readText } from './io/location.js';

export type BackendName = Backend['name'];

export interface OfaPipelineOptions {
  /**
   * A backend instance (the caller keeps ownership) or the name of one to create (the pipeline
   * owns it and destroys it in `dispose`). Default `'webgpu'`.
   */
  backend?: Backend | BackendName;
  /**
   * Side S of the square model input. Default: `patch_image_size` or `image_size` from the
   * checkpoint's config.json, else `image_size` from its manifest.json, else by model size —
   * 256 for tiny and medium (their pretraining resolution), 480 for base and larger (the
   * fine-tuned caption and SNLI-VE checkpoints).
   */
  imageSize?: number;
  /** Default: OFA's BPE vocabulary shipped in `weights/ofa-bpe`. */
  tokenizer?: OfaTokenizer;
  /** Called after each weight tensor is read. */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * Overrides the checkpoint's encoder layout (mue-spec §1): `'decomposed'` for a MuE checkpoint
   * whose config.json lacks `mue_decomposed_encoder: true`.
   */
  encoderMode?: EncoderMode;
  /**
   * MuE early exits for every request that does not choose its own (`exits` of a request wins).
   * Default `false`: no checks at all.
   */
  exits?: ExitSettings | false;
}

/** A threshold no cosine similarity exceeds (cos ≤ 1): the check runs, the layer never exits. */
export const NO_EXIT = 2;

/**
 * MuE's dynamic early exits (mue-spec.md; Tang et al., CVPR 2023) for one request: after every
 * transformer layer, the cosine similarity of a stream's state with its state before the layer;
 * above the stream's threshold the stream stops and its later layers are skipped.
 *
 * - `image`, `text`: the encoder streams' thresholds (`img_thres`, `txt_thres`);
 * - `decoder`: `decoder_thres`. Captions (beam search) apply the authors' schedule per step
 *   (no exit in the first third of the length limit, then `0.9·T + 0.1·e^(−(step+1)/(max_len+1))`),
 *   with the caches of skipped layers filled per `cacheFill`. Entailment runs the decoder once over
 *   the prompt (as the authors' SNLI-VE evaluation does) and takes one decision per layer over all
 *   positions, against `decoder` as given.
 *
 * A threshold left out is `NO_EXIT` (2): its checks run, it never exits; any threshold above 1
 * gives the no-exit result exactly. `false` (or no `exits` at all) runs the plain model, without
 * checks.
 */
export interface ExitSettings {
  image?: number;
  text?: number;
  decoder?: number;
  /**
   * Where decisions are taken: `'device'` (the default for one request: one submission, no
   * read-back per layer, the layers every sample has left gated) or `'host'` (the default for a
   * batch of several: each layer's similarities are read back, and later layers run only for the
   * samples still going — a batch saves per sample).
   */
  site?: DecisionSite;
  /** `'per-sample'` (default: each beam on its own) or `'batch'` (one decision for all beams, the authors'). */
  scope?: DecisionScope;
  /** How the decoder fills the caches of layers a beam skipped: `'copy'` (default, the authors') or `'project'`. */
  cacheFill?: CacheFill;
}

export type ResolvedExitSettings = Required<ExitSettings>;

/** The exit report of one pipeline call. */
export interface PipelineExitReport extends ExitReport {
  /** The settings the call ran with, defaults filled in. */
  settings: ResolvedExitSettings;
  /** The encoder layout: `decomposed` (MuE's two streams) or `joint` (frozen modalities, mue-spec §6). */
  encoderMode: EncoderMode;
  /** The threshold each decoder report was decided against (the schedule's, for captions). */
  decoderThresholds: number[];
}

const SITES: readonly DecisionSite[] = ['device', 'host'];
const SCOPES: readonly DecisionScope[] = ['per-sample', 'batch'];
const FILLS: readonly CacheFill[] = ['copy', 'project'];

/**
 * Checks `settings` and fills in the defaults for a call of `requests` requests (the site: see
 * `ExitSettings.site`); `false`/`undefined` → `undefined` (no checks).
 */
export function resolveExitSettings(settings: ExitSettings | false | undefined, where = 'exits', requests = 1): ResolvedExitSettings | undefined {
  if (settings === undefined || settings === false) return undefined;
  if (typeof settings !== 'object' || settings === null) {
    throw new TypeError(`${where}: expected an object of thresholds or false, got ${String(settings)}`);
  }
  const threshold = (key: 'image' | 'text' | 'decoder'): number => {
    const value = settings[key] ?? NO_EXIT;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new RangeError(`${where}: the ${key} threshold must be a finite number (above 1: never exit), got ${String(value)}`);
    }
    return value;
  };
  const choice = <T extends string>(key: 'site' | 'scope' | 'cacheFill', value: T | undefined, allowed: readonly T[], fallback: T): T => {
    if (value === undefined) return fallback;
    if (!allowed.includes(value)) throw new RangeError(`${where}: ${key} must be one of ${allowed.join(', ')}, got ${String(value)}`);
    return value;
  };
  return {
    image: threshold('image'),
    text: threshold('text'),
    decoder: threshold('decoder'),
    site: choice('site', settings.site, SITES, requests > 1 ? 'host' : 'device'),
    scope: choice('scope', settings.scope, SCOPES, 'per-sample'),
    cacheFill: choice('cacheFill', settings.cacheFill, FILLS, 'copy'),
  };
}

/**
 * An image file (a path, or a URL: fetched in browsers), the bytes of a PNG, JPEG, WebP, GIF or
 * BMP (a `Uint8Array`, or a `Blob` such as a `File` dropped on a page), or an image already
 * decoded (by `decodeImage`, e.g. with another `maxPixels`, or from a canvas).
 */
export type ImageInput = string | URL | Uint8Array | Blob | RgbImage;

/** Wall-clock times of one request, in milliseconds. */
export interface Timing {
  /** Reading, decoding and resizing the image on the host. */
  preprocessMs: number;
  /** ResNet and transformer encoder, until the encoder output is computed. */
  encoderMs: number;
  /** Every decoder pass, its log-softmax and read-back (and, for captions, the search). */
  decoderMs: number;
  /** Positions each sequence was decoded at: caption steps, or entailment's BOS + prompt. */
  decoderTokens: number;
  /** `decoderMs / decoderTokens`. */
  decoderMsPerToken: number;
  totalMs: number;
}

/** Beam search settings; the defaults are OFA's caption evaluation (§7.1: beam 5, max 16, min 1, no 3-gram repeats). */
export interface CaptionOptions extends Omit<BeamSearchOptions, 'sourceLength'> {
  /** MuE early exits for this request (default: the pipeline's); `false`: none. */
  exits?: ExitSettings | false;
}

export interface CaptionResult {
  /** The caption after OFA's post-processing (ASCII punctuation removed, whitespace trimmed). */
  text: string;
  /** The detokenized caption before post-processing. */
  rawText: string;
  /** The generated ids without BOS, ending with EOS. */
  tokens: number[];
  /** The length-normalized log-probability beam search ranked by. */
  score: number;
  /** Each generated token's log-probability given its prefix, EOS included. */
  positionalScores: number[];
  timing: Timing;
  /** With exits: layers run per encoder stream and per decoded token, compute saved, wall time. */
  exitReport?: PipelineExitReport;
}

export interface EntailmentOptions {
  /** The premise caption, for checkpoints fine-tuned with `--add-caption` (§7.3). */
  premise?: string;
  /** MuE early exits for this request (default: the pipeline's); `false`: none. */
  exits?: ExitSettings | false;
}

export interface EntailmentResult {
  label: EntailmentLabel;
  /** The answer the model gives: `' yes'`, `' no'` or `' maybe'`. */
  answer: string;
  /** The three answers' softmax over just the three of them (what OFA's constraint trie scores). */
  probabilities: Record<EntailmentLabel, number>;
  /** Each answer's log-probability over the whole vocabulary at the last prompt position. */
  logProbs: Record<EntailmentLabel, number>;
  /** The encoder input ids: BOS, the prompt, EOS. */
  promptTokens: number[];
  /**
   * The hypothesis or premise words past the 80th, dropped as OFA's SNLI-VE evaluation drops
   * them (`max_src_length`): empty when nothing was cut.
   */
  truncated: EntailmentTruncation[];
  timing: Timing;
  /** With exits: layers run per encoder stream and by the prompt pass, compute saved, wall time. */
  exitReport?: PipelineExitReport;
}

/** Creates a backend by name; `'webgpu'` fails with the reason when WebGPU has no adapter. */
export async function createBackend(name: BackendName): Promise<Backend> {
  if (name === 'cpu') return new CpuBackend();
  // Loaded on demand: the CPU path never touches Dawn or the kernel files.
  const { createWebGpuBackend } = await import('./backend/webgpu/index.js');
  return createWebGpuBackend();
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Where a model comes from: a folder or a `.safetensors` file (a path or a URL), or explicit files. */
export type ModelSource = FileLocation | OfaModelFiles;

/** The source as messages name it. */
function sourceLabel(source: ModelSource): string {
  const weights = isLocation(source) ? source : source.weights;
  return isLocation(weights) ? locationLabel(weights) : 'weights (in memory)';
}

function checkImageSize(size: number, where: string): number {
  if (!Number.isInteger(size) || size < 1) throw new Error(`${where}: image size must be a positive integer, got ${size}`);
  return size;
}

/** The image size recorded with the checkpoint (see `OfaPipelineOptions.imageSize`), if any. */
async function recordedImageSize(source: ModelSource): Promise<number | undefined> {
  const files: Partial<OfaModelFiles> = isLocation(source) ? {} : source;
  const weights = isLocation(source) ? source : source.weights;
  const dir = isLocation(weights) ? (locationLabel(weights).endsWith('.safetensors') ? parentOf(weights) : weights) : undefined;
  const sources = [
    { given: files.config, file: 'config.json', keys: ['patch_image_size', 'image_size'] },
    { given: files.manifest, file: 'manifest.json', keys: ['image_size'] },
  ];
  for (const { given, file, keys } of sources) {
    const location = given ?? (dir === undefined ? undefined : childOf(dir, file));
    if (location === undefined || !(await exists(location))) continue;
    const label = locationLabel(location);
    let text: string;
    try {
      text = await readText(location);
    } catch (error) {
      throw new Error(`${label}: cannot read (${error instanceof FileReadError ? error.reason : String(error)})`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new Error(`${label}: not valid JSON (${(error as Error).message})`);
    }
    for (const key of keys) {
      if (isRecord(json) && json[key] !== undefined) {
        const value = json[key];
        return checkImageSize(typeof value === 'number' ? value : NaN, `${label}: "${key}"`);
      }
    }
  }
  return undefined;
}

/** 256 for tiny and medium, 480 for base and larger (see `OfaPipelineOptions.imageSize`). */
function defaultImageSize(config: OfaConfig): number {
  return config.dModel < 768 ? 256 : 480;
}

const ANSWER_OF_LABEL = new Map(ENTAILMENT_ANSWERS.map((answer) => [answer.label, answer]));

export class OfaPipeline {
  readonly #ownsBackend: boolean;
  readonly #requestedExits: ExitSettings | false | undefined;
  /** The tail of the request queue: each request starts when the previous one has settled. */
  #queue: Promise<unknown> = Promise.resolve();
  #disposed = false;

  private constructor(
    readonly backend: Backend,
    readonly model: OfaModel,
    readonly tokenizer: OfaTokenizer,
    /** Side of the square model input. */
    readonly imageSize: number,
    /** Where the weights were loaded from (a path or a URL). */
    readonly weights: string,
    ownsBackend: boolean,
    /** The requests' default exits (`undefined`: none), as resolved for one request. */
    readonly exits: ResolvedExitSettings | undefined,
    /** The same as given (a batch resolves them for its size). */
    requestedExits: ExitSettings | false | undefined,
  ) {
    this.#ownsBackend = ownsBackend;
    this.#requestedExits = requestedExits;
  }

  /**
   * Loads a checkpoint — a directory with `weights.safetensors` (or `model.safetensors`) and
   * `config.json` or `manifest.json`, or a `.safetensors` file with those beside it, as a path or
   * a URL; or explicit files — onto a backend. Default: the embedded demo model
   * (`weights/ofa-tiny-demo`, beside the package or the page's bundle). The model's vocabulary must
   * be OFA's (the tokenizer's): the prompts and answers are ids of that vocabulary.
   */
  static async load(source: ModelSource = DEFAULT_MODEL, options: OfaPipelineOptions = {}): Promise<OfaPipeline> {
    const weights = sourceLabel(source);
    if (isLocation(source) && !isFetched(source)) {
      const { stat } = await import('node:fs/promises');
      await stat(source).catch((error: unknown) => {
        throw new Error(`weights ${weights}: ${fileErrorReason(error)}`);
      });
    }
    const requestedSize = options.imageSize === undefined ? undefined : checkImageSize(options.imageSize, 'OfaPipeline');
    const exits = resolveExitSettings(options.exits, 'OfaPipeline exits');
    const tokenizer = options.tokenizer ?? (await OfaTokenizer.load());

    const given = options.backend ?? 'webgpu';
    const backend = typeof given === 'string' ? await createBackend(given) : given;
    const ownsBackend = typeof given === 'string';
    let model: OfaModel | undefined;
    try {
      model = await OfaModel.load(backend, source, { onProgress: options.onProgress, encoderMode: options.encoderMode });
      const { vocabSize } = model.config;
      if (vocabSize !== tokenizer.vocabSize) {
        throw new Error(
          `${weights}: the model's token table has ${vocabSize} ids, but OFA's tokenizer produces ids of a ` +
            `${tokenizer.vocabSize}-entry vocabulary; captioning and entailment need a checkpoint with OFA's ` +
            `vocabulary (a model with a cut vocabulary, such as the golden weights/ofa-tiny-random, serves \`mue verify\` ` +
            `only; the shipped demo model weights/ofa-tiny-demo runs end to end)`,
        );
      }
      const imageSize = requestedSize ?? (await recordedImageSize(source)) ?? defaultImageSize(model.config);
      const grid = resnetOutputSize(imageSize);
      const buckets = model.config.imageBucketSize;
      if (grid > buckets) {
        throw new Error(
          `image size ${imageSize} gives a ${grid}×${grid} patch grid; the model's image position buckets ` +
            `allow at most ${buckets}×${buckets} (an image size of at most ${16 * buckets})`,
        );
      }
      return new OfaPipeline(backend, model, tokenizer, imageSize, weights, ownsBackend, exits, options.exits);
    } catch (error) {
      model?.dispose();
      if (ownsBackend) backend.destroy();
      throw error;
    }
  }

  get config(): OfaConfig {
    return this.model.config;
  }

  /** §7.1: beam search over `[BOS] + bpe(" what does the image describe?") + [EOS]`, then `eval_caption`'s clean-up. */
  async caption(image: ImageInput, options: CaptionOptions = {}): Promise<CaptionResult> {
    return (await this.captionBatch([image], options))[0]!;
  }

  /**
   * `caption` for several images at once: one forward pass over the batch (encoder rows, and the
   * beams of every image in one decoder batch; an image whose search has finished leaves it), the
   * same results as one call per image. Each result carries its image's `exitReport` and the
   * batch's `timing`.
   */
  captionBatch(images: readonly ImageInput[], options: CaptionOptions = {}): Promise<CaptionResult[]> {
    return this.#exclusive(async () => {
      const { exits: requested, ...searchOptions } = options;
      const beamSize = searchOptions.beamSize ?? 5;
      if (!Number.isInteger(beamSize) || beamSize < 1) {
        throw new RangeError(`caption: beam size must be a positive integer, got ${beamSize}`);
      }
      const exits = this.#exitsOf(requested, 'caption', images.length);
      if (images.length === 0) return [];
      // One decision over a request's beams is the authors' rule for one request: run them one by one.
      if (exits?.scope === 'batch' && images.length > 1) {
        const results: CaptionResult[] = [];
        for (const image of images) results.push(...(await this.#captionBatch([image], searchOptions, exits)));
        return results;
      }
      return this.#captionBatch(images, searchOptions, exits);
    });
  }

  async #captionBatch(images: readonly ImageInput[], searchOptions: Omit<CaptionOptions, 'exits'>, exits?: ResolvedExitSettings): Promise<CaptionResult[]> {
    const start = performance.now();
    const promptTokens = this.#prompt(CAPTION_PROMPT, 'caption prompt');
    const search = { ...searchOptions, sourceLength: promptTokens.length };
    // The length limit the decoder's threshold schedule follows (validated before any image work).
    const maxLen = maxGenerationLength(search);
    // beamSearch keeps min(beam, V − 1) sequences alive per image; the decoder holds that many from step 0.
    const beams = Math.min(searchOptions.beamSize ?? 5, this.config.vocabSize - 1);
    this.#checkBeamsFit(images.length, beams, maxLen);
    const { encoded, imageOf, preprocessMs, encoderMs, encoderReports } = await this.#encode(
      images,
      images.map(() => promptTokens),
      exits,
    );
    const decodeStart = performance.now();
    let decoder: OfaStepDecoder | undefined;
    try {
      decoder = exits
        ? new ExitingStepDecoder(this.model, encoded, beams, {
            threshold: exits.decoder,
            maxLen,
            site: exits.site,
            scope: exits.scope,
            fill: exits.cacheFill,
          })
        : new OfaStepDecoder(this.model, encoded, beams);
      const searches = await beamSearchBatch(decoder, images.length, search);
      const decoderMs = performance.now() - decodeStart;
      const batchTiming = timing(start, preprocessMs, encoderMs, decoderMs, decoder.length);
      if (searches.some((hypotheses) => hypotheses[0] === undefined)) {
        throw await this.#failure('caption: beam search ended without a finished hypothesis', encoded);
      }
      return searches.map((hypotheses, b) => {
        const best = hypotheses[0]!;
        const tokens = Array.from(best.tokens);
        const rawText = this.tokenizer.decode(tokens);
        const result: CaptionResult = {
          text: captionPostprocess(rawText),
          rawText,
          tokens,
          score: best.score,
          positionalScores: Array.from(best.positionalScores),
          timing: batchTiming,
        };
        if (exits && decoder instanceof ExitingStepDecoder) {
          const stepper = decoder;
          const steps = stepper.reportsOf(b);
          const thresholds = steps.map((_, step) => stepper.stepThreshold(step));
          const encoder = this.#encoderReportsOf(encoderReports!, b, imageOf, patchesOf(encoded), promptTokens.length);
          result.exitReport = this.#exitReport(exits, encoder, steps, thresholds, batchTiming);
        }
        return result;
      });
    } finally {
      decoder?.dispose();
      encoded.dispose();
    }
  }

  /**
   * §7.3: the decoder runs once over `[BOS] + prompt` (no EOS); the label is the best of the
   * answers " yes", " no", " maybe" at the last position.
   */
  async entail(image: ImageInput, hypothesis: string, options: EntailmentOptions = {}): Promise<EntailmentResult> {
    const { exits, ...request } = options;
    return (await this.entailBatch([{ image, hypothesis, ...request }], exits === undefined ? {} : { exits }))[0]!;
  }

  /**
   * `entail` for several requests at once: one forward pass over the batch (hypotheses of
   * different lengths padded, padding never reaching a request's output or exit decisions; an
   * image shared by several requests is encoded once — in the decomposed encoder its stream runs
   * once), the same results as one call per request. Each result carries its request's
   * `exitReport` and the batch's `timing`.
   */
  entailBatch(
    requests: ReadonlyArray<{ image: ImageInput; hypothesis: string; premise?: string }>,
    options: { exits?: ExitSettings | false } = {},
  ): Promise<EntailmentResult[]> {
    return this.#exclusive(async () => {
      requests.forEach(({ hypothesis }, b) => {
        if (hypothesis.trim() === '') throw new Error(`entail: the hypothesis${requests.length > 1 ? ` of request ${b}` : ''} is empty`);
      });
      const exits = this.#exitsOf(options.exits, 'entail', requests.length);
      if (requests.length === 0) return [];
      const start = performance.now();
      const prompts = requests.map(({ hypothesis, premise }) => {
        const what = premise === undefined ? 'hypothesis' : 'premise and hypothesis';
        return this.#prompt(entailmentPrompt(hypothesis, premise), `entailment prompt (${what})`);
      });
      const { encoded, imageOf, preprocessMs, encoderMs, encoderReports } = await this.#encode(
        requests.map((r) => r.image),
        prompts,
        exits,
      );
      try {
        const decodeStart = performance.now();
        const decoderIds = prompts.map((tokens) => tokens.slice(0, -1));
        const logitsAt = decoderIds.map((ids) => ids.length - 1);
        let logProbs: Float32Array[];
        let decoderReport: StreamReport | undefined;
        if (exits) {
          // The authors' SNLI-VE evaluation: one teacher-forced pass over the prompt, one decision
          // per layer over all its positions, against decoder_thres as given (no schedule). Each
          // request has one row, so its own decision is the 'batch' scope's too.
          const decoded = await decodeFullWithExits(this.model, encoded, decoderIds, {
            threshold: exits.decoder,
            site: exits.site,
            scope: requests.length > 1 ? 'per-sample' : exits.scope,
            logitsAt,
          });
          try {
            decoderReport = decoded.report;
            logProbs = await this.#logProbsOf(decoded.logits);
          } finally {
            decoded.dispose();
          }
        } else {
          const decoded = this.model.decodeFull(encoded, decoderIds, { logitsAt });
          try {
            logProbs = await this.#logProbsOf(decoded.logits);
          } finally {
            decoded.dispose();
          }
        }
        const decoderMs = performance.now() - decodeStart;
        const batchTiming = timing(start, preprocessMs, encoderMs, decoderMs, Math.max(...decoderIds.map((ids) => ids.length)));
        if (logProbs.some((scores) => ENTAILMENT_ANSWERS.some(({ tokenId }) => !Number.isFinite(scores[tokenId])))) {
          throw await this.#failure('entail: the answer scores are not finite', encoded);
        }
        return requests.map((_, b) => {
          const scores = logProbs[b]!;
          const reading = readEntailment(scores);
          const answerOf = (label: EntailmentLabel): EntailmentAnswer => ANSWER_OF_LABEL.get(label)!;
          const logProbOf = (label: EntailmentLabel): number => scores[answerOf(label).tokenId]!;
          const result: EntailmentResult = {
            label: reading.label,
            answer: answerOf(reading.label).text,
            probabilities: reading.probabilities,
            logProbs: {
              entailment: logProbOf('entailment'),
              contradiction: logProbOf('contradiction'),
              neutral: logProbOf('neutral'),
            },
            promptTokens: prompts[b]!,
            truncated: entailmentTruncations(requests[b]!.hypothesis, requests[b]!.premise),
            timing: batchTiming,
          };
          if (exits) {
            const encoder = this.#encoderReportsOf(encoderReports!, b, imageOf, patchesOf(encoded), prompts[b]!.length);
            const decoder = reportOfRows(decoderReport!, [b], decoderIds[b]!.length);
            result.exitReport = this.#exitReport(exits, encoder, [decoder], [exits.decoder], batchTiming);
          }
          return result;
        });
      } finally {
        encoded.dispose();
      }
    });
  }

  /** Frees the model (and the backend, when the pipeline created it). Later requests fail. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.model.dispose();
    if (this.#ownsBackend) this.backend.destroy();
  }

  #exclusive<T>(request: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.#disposed) throw new Error('OfaPipeline: this pipeline was disposed');
      return request();
    };
    const result = this.#queue.then(run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** `[BOS] + bpe(text) + [EOS]`, refused before any image work when it exceeds the model's positions. */
  #prompt(text: string, what: string): number[] {
    const ids = this.tokenizer.encodeWithSpecials(text);
    const limit = this.config.maxPositions;
    if (ids.length > limit) {
      throw new Error(
        `${what} is too long: ${ids.length} tokens, but the model reads at most ${limit} (max_position_embeddings)`,
      );
    }
    return ids;
  }

  /** A request's exits: its own, else the pipeline's; validated. */
  #exitsOf(requested: ExitSettings | false | undefined, where: string, requests: number): ResolvedExitSettings | undefined {
    return resolveExitSettings(requested === undefined ? this.#requestedExits : requested, `${where}: exits`, requests);
  }

  /**
   * Refuses beams whose decoder tensors would not fit one tensor of the backend, before any image
   * work: each step's logits `[images·beams, V]` and each layer's key cache `[images·beams, maxLen + 1, d]`.
   */
  #checkBeamsFit(images: number, beams: number, maxLen: number): void {
    const perBeam = Math.max(this.config.vocabSize, (maxLen + 1) * this.config.dModel);
    const limit = this.backend.maxTensorElements('f32');
    if (images * beams * perBeam <= limit) return;
    const gigabytes = (elements: number): string => `${((elements * 4) / 1e9).toFixed(2)} GB`;
    const where = this.backend.name === 'webgpu' ? "the device's maxBufferSize" : 'the longest typed array';
    throw new RangeError(
      `caption: ${beams} beams${images > 1 ? ` for each of ${images} images` : ''} need decoder tensors of ` +
        `${images * beams} × ${perBeam} f32 (${gigabytes(images * beams * perBeam)}), more than one ${this.backend.name} ` +
        `tensor holds (${gigabytes(limit)}, ${where}): use a beam of at most ${Math.floor(limit / perBeam / images)}`,
    );
  }

  /**
   * The error of a request without a usable result; where the forward pass stopped being finite
   * (a NaN or an infinity in the weights, or an overflow), it names the stage and the weights.
   */
  async #failure(what: string, encoded: EncoderOutput): Promise<Error> {
    const diagnosis = await diagnoseNonFinite(this.model, encoded);
    if (diagnosis.stage === undefined && diagnosis.weights.length === 0) return new Error(what);
    return new Error(`${what}: the model's output is not finite: ${describeNonFinite(diagnosis)}`);
  }

  #exitReport(
    settings: ResolvedExitSettings,
    encoder: StreamReport[],
    decoder: StreamReport[],
    decoderThresholds: number[],
    timing: Timing,
  ): PipelineExitReport {
    return {
      ...exitReport(encoder, decoder, timing.totalMs),
      settings,
      encoderMode: this.config.encoderMode,
      decoderThresholds,
    };
  }

  /**
   * One request's part of a batch's encoder reports: its text's row (weighted by its own
   * length, not the batch's padded one) and its image's (a row of the decomposed image stream
   * serves every request reading that image).
   */
  #encoderReportsOf(reports: StreamReport[], request: number, imageOf: readonly number[], patches: number, textLength: number): StreamReport[] {
    const decomposed = this.config.encoderMode === 'decomposed';
    return reports.map((report) => {
      if (report.stream === 'image') return reportOfRows(report, [decomposed ? imageOf[request]! : request]);
      if (report.stream === 'text') return reportOfRows(report, [request], decomposed ? textLength : 0);
      return reportOfRows(report, [request], patches + textLength); // the joint stack
    });
  }

  /**
   * Preprocesses the images (each distinct one once: the same path or the same bytes object) and
   * runs the encoder on the batch of texts: the plain model, or with exits `encodeBatchWithExits`
   * (whose stream reports are read once the forward pass is done). `imageOf[b]` is text b's
   * image among the distinct ones.
   */
  async #encode(
    images: readonly ImageInput[],
    prompts: readonly (readonly number[])[],
    exits?: ResolvedExitSettings,
  ): Promise<{ encoded: EncoderOutput; imageOf: number[]; preprocessMs: number; encoderMs: number; encoderReports?: StreamReport[] }> {
    const start = performance.now();
    const size = this.imageSize;
    const distinct: ImageInput[] = [];
    const imageOf = images.map((image) => {
      const known = distinct.indexOf(image);
      return known >= 0 ? known : distinct.push(image) - 1;
    });
    const plane = 3 * size * size;
    const pixels = new Float32Array(distinct.length * plane);
    for (const [i, image] of distinct.entries()) pixels.set(await this.#pixels(image), i * plane);
    const encodeStart = performance.now();
    const input = this.backend.upload(pixels, [distinct.length, 3, size, size], 'f32');
    try {
      const batch = { pixels: input, texts: prompts, images: imageOf };
      let encoded: EncoderOutput;
      let encoderReports: StreamReport[] | undefined;
      if (exits) {
        const { image: imageThreshold, text, site, scope } = exits;
        const result = await encodeBatchWithExits(this.model, batch, {
          image: imageThreshold,
          text,
          site,
          scope: prompts.length > 1 ? 'per-sample' : scope,
        });
        encoded = result.output;
        encoderReports = result.reports;
      } else {
        encoded = this.model.encodeBatch(batch);
      }
      try {
        await this.backend.sync();
      } catch (error) {
        encoded.dispose();
        throw error;
      }
      return { encoded, imageOf, preprocessMs: encodeStart - start, encoderMs: performance.now() - encodeStart, encoderReports };
    } finally {
      input.dispose();
    }
  }

  /** One image as the model's input `[3, S, S]` (§3). */
  async #pixels(image: ImageInput): Promise<Float32Array> {
    const size = this.imageSize;
    if (typeof image === 'string' || image instanceof URL) {
      const label = locationLabel(image);
      const bytes = await readBytes(image).catch((error: unknown) => {
        throw new Error(`image ${label}: ${error instanceof FileReadError ? error.reason : String(error)}`);
      });
      return (await preprocessImage(bytes, size, label)).pixels;
    }
    if (image instanceof Uint8Array) return (await preprocessImage(image, size, 'image')).pixels;
    if (image instanceof Blob) {
      const label = image instanceof File ? image.name : 'image';
      return (await preprocessImage(new Uint8Array(await image.arrayBuffer()), size, label)).pixels;
    }
    return toModelInput(resizeBicubic(image, size, size));
  }

  /** The log-softmax of one row of logits per request (`[B, 1, V]`), read back: `[V]` per request. */
  async #logProbsOf(logits: Tensor): Promise<Float32Array[]> {
    const backend = this.backend;
    const vocabSize = this.config.vocabSize;
    const batch = logits.shape[0]!;
    const logProbs = backend.logSoftmax(logits.reshape([batch, vocabSize]));
    try {
      const values = await logProbs.read();
      if (!(values instanceof Float32Array)) {
        throw new Error(`entail: log-probabilities read back as ${logProbs.dtype}, expected f32`);
      }
      return Array.from({ length: batch }, (_, b) => values.slice(b * vocabSize, (b + 1) * vocabSize));
    } finally {
      logProbs.dispose();
    }
  }
}

function patchesOf(encoded: EncoderOutput): number {
  return encoded.imageGrid.rows * encoded.imageGrid.cols;
}

function timing(start: number, preprocessMs: number, encoderMs: number, decoderMs: number, decoderTokens: number): Timing {
  return {
    preprocessMs,
    encoderMs,
    decoderMs,
    decoderTokens,
    decoderMsPerToken: decoderTokens > 0 ? decoderMs / decoderTokens : 0,
    totalMs: performance.now() - start,
  };
}
