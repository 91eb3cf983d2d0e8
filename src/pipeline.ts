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
import { beamSearch, maxGenerationLength, type BeamSearchOptions } from './generate/beam-search.js';
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
import { encodeWithExits } from './mue/encoder-exits.js';
import type { DecisionScope, DecisionSite } from './mue/exit.js';
import { decodeFullWithExits } from './mue/full-pass-exits.js';
import { type ExitReport, type StreamReport, exitReport } from './mue/report.js';
import type { Tensor } from './tensor.js';
import { OfaTokenizer } from './text/bpe.js';
import { DEFAULT_MODEL } from './assets.js';
import { type FileLocation, FileReadError, childOf, exists, isFetched, locationLabel, parentOf, readBytes, readText } from './io/location.js';

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
  /** Where decisions are taken: `'device'` (default; no read-back per layer) or `'host'`. */
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

/** Checks `settings` and fills in the defaults; `false`/`undefined` → `undefined` (no checks). */
export function resolveExitSettings(settings: ExitSettings | false | undefined, where = 'exits'): ResolvedExitSettings | undefined {
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
    site: choice('site', settings.site, SITES, 'device'),
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

function errorCode(error: unknown): string | undefined {
  return isRecord(error) && typeof error['code'] === 'string' ? error['code'] : undefined;
}

/** A file-system error as a short reason (`no such file or directory`), else its message. */
function fsReason(error: unknown): string {
  switch (errorCode(error)) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EISDIR':
      return 'is a directory, not a file';
    case 'EACCES':
      return 'permission denied';
    default:
      return error instanceof Error ? error.message : String(error);
  }
}

/** Where a model comes from: a folder or a `.safetensors` file (a path or a URL), or explicit files. */
export type ModelSource = FileLocation | OfaModelFiles;

function isLocation(value: unknown): value is FileLocation {
  return typeof value === 'string' || value instanceof URL;
}

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
    /** The requests' default exits (`undefined`: none). */
    readonly exits: ResolvedExitSettings | undefined,
  ) {
    this.#ownsBackend = ownsBackend;
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
        throw new Error(`weights ${weights}: ${fsReason(error)}`);
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
      return new OfaPipeline(backend, model, tokenizer, imageSize, weights, ownsBackend, exits);
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
  caption(image: ImageInput, options: CaptionOptions = {}): Promise<CaptionResult> {
    return this.#exclusive(async () => {
      const { exits: requested, ...searchOptions } = options;
      const beamSize = searchOptions.beamSize ?? 5;
      if (!Number.isInteger(beamSize) || beamSize < 1) {
        throw new RangeError(`caption: beam size must be a positive integer, got ${beamSize}`);
      }
      const exits = this.#exitsOf(requested, 'caption');
      const start = performance.now();
      const promptTokens = this.#prompt(CAPTION_PROMPT, 'caption prompt');
      const search = { ...searchOptions, sourceLength: promptTokens.length };
      // The length limit the decoder's threshold schedule follows (validated before any image work).
      const maxLen = maxGenerationLength(search);
      // beamSearch keeps min(beam, V − 1) sequences alive; the decoder holds that many from step 0.
      const beams = Math.min(beamSize, this.config.vocabSize - 1);
      this.#checkBeamsFit(1, beams, maxLen);
      const { encoded, preprocessMs, encoderMs, encoderReports } = await this.#encode(image, promptTokens, exits);
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
        const hypotheses = await beamSearch(decoder, search);
        const best = hypotheses[0];
        if (best === undefined) throw await this.#failure('caption: beam search ended without a finished hypothesis', encoded);
        const decoderMs = performance.now() - decodeStart;
        const tokens = Array.from(best.tokens);
        const rawText = this.tokenizer.decode(tokens);
        const result: CaptionResult = {
          text: captionPostprocess(rawText),
          rawText,
          tokens,
          score: best.score,
          positionalScores: Array.from(best.positionalScores),
          timing: timing(start, preprocessMs, encoderMs, decoderMs, decoder.length),
        };
        if (exits && decoder instanceof ExitingStepDecoder) {
          const stepper = decoder;
          const thresholds = stepper.reports.map((_, step) => stepper.stepThreshold(step));
          result.exitReport = this.#exitReport(exits, encoderReports!, stepper.reports, thresholds, result.timing);
        }
        return result;
      } finally {
        decoder?.dispose();
        encoded.dispose();
      }
    });
  }

  /**
   * §7.3: the decoder runs once over `[BOS] + prompt` (no EOS); the label is the best of the
   * answers " yes", " no", " maybe" at the last position.
   */
  entail(image: ImageInput, hypothesis: string, options: EntailmentOptions = {}): Promise<EntailmentResult> {
    return this.#exclusive(async () => {
      if (hypothesis.trim() === '') throw new Error('entail: the hypothesis is empty');
      const exits = this.#exitsOf(options.exits, 'entail');
      const start = performance.now();
      const what = options.premise === undefined ? 'hypothesis' : 'premise and hypothesis';
      const promptTokens = this.#prompt(entailmentPrompt(hypothesis, options.premise), `entailment prompt (${what})`);
      const { encoded, preprocessMs, encoderMs, encoderReports } = await this.#encode(image, promptTokens, exits);
      try {
        const decodeStart = performance.now();
        const decoderIds = promptTokens.slice(0, -1);
        let logProbs: Float32Array;
        let decoderReport: StreamReport | undefined;
        if (exits) {
          // The authors' SNLI-VE evaluation: one teacher-forced pass over the prompt, one decision
          // per layer over all its positions, against decoder_thres as given (no schedule).
          const decoded = await decodeFullWithExits(this.model, encoded, [decoderIds], {
            threshold: exits.decoder,
            site: exits.site,
            scope: exits.scope,
          });
          try {
            decoderReport = decoded.report;
            logProbs = await this.#lastPositionLogProbs(decoded.logits, decoderIds.length);
          } finally {
            decoded.dispose();
          }
        } else {
          const decoded = this.model.decodeFull(encoded, [decoderIds]);
          try {
            logProbs = await this.#lastPositionLogProbs(decoded.logits, decoderIds.length);
          } finally {
            decoded.dispose();
          }
        }
        const decoderMs = performance.now() - decodeStart;
        if (ENTAILMENT_ANSWERS.some(({ tokenId }) => !Number.isFinite(logProbs[tokenId]))) {
          throw await this.#failure('entail: the answer scores are not finite', encoded);
        }
        const reading = readEntailment(logProbs);
        const answerOf = (label: EntailmentLabel): EntailmentAnswer => ANSWER_OF_LABEL.get(label)!;
        const logProbOf = (label: EntailmentLabel): number => logProbs[answerOf(label).tokenId]!;
        const result: EntailmentResult = {
          label: reading.label,
          answer: answerOf(reading.label).text,
          probabilities: reading.probabilities,
          logProbs: {
            entailment: logProbOf('entailment'),
            contradiction: logProbOf('contradiction'),
            neutral: logProbOf('neutral'),
          },
          promptTokens,
          truncated: entailmentTruncations(hypothesis, options.premise),
          timing: timing(start, preprocessMs, encoderMs, decoderMs, decoderIds.length),
        };
        if (exits) {
          result.exitReport = this.#exitReport(exits, encoderReports!, [decoderReport!], [exits.decoder], result.timing);
        }
        return result;
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
  #exitsOf(requested: ExitSettings | false | undefined, where: string): ResolvedExitSettings | undefined {
    return requested === undefined ? this.exits : resolveExitSettings(requested, `${where}: exits`);
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
   * Preprocesses the image and runs the encoder: the plain model, or with exits `encodeWithExits`
   * (whose stream reports are read once the forward pass is done).
   */
  async #encode(
    image: ImageInput,
    promptTokens: readonly number[],
    exits?: ResolvedExitSettings,
  ): Promise<{ encoded: EncoderOutput; preprocessMs: number; encoderMs: number; encoderReports?: StreamReport[] }> {
    const start = performance.now();
    const size = this.imageSize;
    let pixels: Float32Array;
    if (typeof image === 'string' || image instanceof URL) {
      const label = locationLabel(image);
      const bytes = await readBytes(image).catch((error: unknown) => {
        throw new Error(`image ${label}: ${error instanceof FileReadError ? error.reason : String(error)}`);
      });
      pixels = (await preprocessImage(bytes, size, label)).pixels;
    } else if (image instanceof Uint8Array) {
      pixels = (await preprocessImage(image, size, 'image')).pixels;
    } else if (image instanceof Blob) {
      const label = image instanceof File ? image.name : 'image';
      pixels = (await preprocessImage(new Uint8Array(await image.arrayBuffer()), size, label)).pixels;
    } else {
      pixels = toModelInput(resizeBicubic(image, size, size));
    }
    const encodeStart = performance.now();
    const input = this.backend.upload(pixels, [1, 3, size, size], 'f32');
    try {
      let encoded: EncoderOutput;
      let encoderReports: StreamReport[] | undefined;
      if (exits) {
        const { image: imageThreshold, text, site, scope } = exits;
        const result = await encodeWithExits(this.model, input, promptTokens, { image: imageThreshold, text, site, scope });
        encoded = result.output;
        encoderReports = result.reports;
      } else {
        encoded = this.model.encode(input, promptTokens);
      }
      try {
        await this.backend.sync();
      } catch (error) {
        encoded.dispose();
        throw error;
      }
      return { encoded, preprocessMs: encodeStart - start, encoderMs: performance.now() - encodeStart, encoderReports };
    } finally {
      input.dispose();
    }
  }

  /** The log-softmax of the last position's logits of a teacher-forced pass (`[1, T, V]`), `[V]`. */
  async #lastPositionLogProbs(logits: Tensor, length: number): Promise<Float32Array> {
    const backend = this.backend;
    const logProbs = backend.tidy(() => {
      const last = backend.slice(logits, 1, length - 1, length);
      return backend.logSoftmax(last.reshape([1, this.config.vocabSize]));
    });
    try {
      const values = await logProbs.read();
      if (!(values instanceof Float32Array)) {
        throw new Error(`entail: log-probabilities read back as ${logProbs.dtype}, expected f32`);
      }
      return values;
    } finally {
      logProbs.dispose();
    }
  }
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
