/**
 * The library's high-level API: an OFA checkpoint loaded once onto one backend, answering
 * captioning (ofa-arch.md §7.1) and visual entailment (§7.3) requests from image files or bytes.
 *
 *   const ofa = await OfaPipeline.load('weights/my-ofa', { backend: 'webgpu' });
 *   const { text } = await ofa.caption('photo.jpg');
 *   const { label } = await ofa.entail('photo.jpg', 'two dogs play in the snow');
 *   ofa.dispose();
 *
 * A pipeline owns its model (no cache is shared between pipelines, so `dispose` frees exactly
 * what `load` created); a second backend means a second pipeline. Requests on one pipeline run
 * one after another: their timings then measure that request alone.
 */
import type { Backend } from './backend/backend.js';
import { CpuBackend } from './backend/cpu/cpu-backend.js';
import { beamSearch, type BeamSearchOptions } from './generate/beam-search.js';
import {
  CAPTION_PROMPT,
  ENTAILMENT_ANSWERS,
  captionPostprocess,
  entailmentPrompt,
  readEntailment,
  type EntailmentAnswer,
  type EntailmentLabel,
} from './generate/tasks.js';
import { preprocessImage } from './image/preprocess.js';
import type { OfaConfig } from './models/ofa/config.js';
import type { EncoderOutput } from './models/ofa/encoder.js';
import { OfaModel } from './models/ofa/model.js';
import { resnetOutputSize } from './models/ofa/resnet.js';
import { OfaStepDecoder } from './models/ofa/step-decoder.js';
import type { LoadProgress } from './models/ofa/weights.js';
import { OfaTokenizer } from './text/bpe.js';

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
}

/** An image file's path, or the bytes of a PNG or JPEG. */
export type ImageInput = string | Uint8Array;

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
export type CaptionOptions = Omit<BeamSearchOptions, 'sourceLength'>;

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
}

export interface EntailmentOptions {
  /** The premise caption, for checkpoints fine-tuned with `--add-caption` (§7.3). */
  premise?: string;
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
  timing: Timing;
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

function checkImageSize(size: number, where: string): number {
  if (!Number.isInteger(size) || size < 1) throw new Error(`${where}: image size must be a positive integer, got ${size}`);
  return size;
}

/** The image size recorded with the checkpoint (see `OfaPipelineOptions.imageSize`), if any. */
async function recordedImageSize(weights: string): Promise<number | undefined> {
  const { readFile } = await import('node:fs/promises');
  const { dirname, join } = await import('node:path');
  const dir = weights.endsWith('.safetensors') ? dirname(weights) : weights;
  const sources = [
    { file: 'config.json', keys: ['patch_image_size', 'image_size'] },
    { file: 'manifest.json', keys: ['image_size'] },
  ];
  for (const { file, keys } of sources) {
    const path = join(dir, file);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      throw new Error(`${path}: cannot read (${fsReason(error)})`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new Error(`${path}: not valid JSON (${(error as Error).message})`);
    }
    for (const key of keys) {
      if (isRecord(json) && json[key] !== undefined) {
        const value = json[key];
        return checkImageSize(typeof value === 'number' ? value : NaN, `${path}: "${key}"`);
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
    /** The weights path the pipeline was loaded from. */
    readonly weights: string,
    ownsBackend: boolean,
  ) {
    this.#ownsBackend = ownsBackend;
  }

  /**
   * Loads a checkpoint — a directory with `weights.safetensors` (or `model.safetensors`) and
   * `config.json` or `manifest.json`, or a `.safetensors` file with those beside it — onto a
   * backend. The model's vocabulary must be OFA's (the tokenizer's): the prompts and answers
   * are ids of that vocabulary.
   */
  static async load(weights: string, options: OfaPipelineOptions = {}): Promise<OfaPipeline> {
    const { stat } = await import('node:fs/promises');
    await stat(weights).catch((error: unknown) => {
      throw new Error(`weights ${weights}: ${fsReason(error)}`);
    });
    const requestedSize = options.imageSize === undefined ? undefined : checkImageSize(options.imageSize, 'OfaPipeline');
    const tokenizer = options.tokenizer ?? (await OfaTokenizer.load());

    const given = options.backend ?? 'webgpu';
    const backend = typeof given === 'string' ? await createBackend(given) : given;
    const ownsBackend = typeof given === 'string';
    let model: OfaModel | undefined;
    try {
      model = await OfaModel.load(backend, weights, { onProgress: options.onProgress });
      const { vocabSize } = model.config;
      if (vocabSize !== tokenizer.vocabSize) {
        throw new Error(
          `${weights}: the model's token table has ${vocabSize} ids, but OFA's tokenizer produces ids of a ` +
            `${tokenizer.vocabSize}-entry vocabulary; captioning and entailment need a checkpoint with OFA's ` +
            `vocabulary (a model with a cut vocabulary, such as the golden weights/ofa-tiny-random, serves \`mue verify\` ` +
            `only; the shipped demo model weights/ofa-tiny-demo runs end to end)`,
        );
      }
      const imageSize = requestedSize ?? (await recordedImageSize(weights)) ?? defaultImageSize(model.config);
      const grid = resnetOutputSize(imageSize);
      const buckets = model.config.imageBucketSize;
      if (grid > buckets) {
        throw new Error(
          `image size ${imageSize} gives a ${grid}×${grid} patch grid; the model's image position buckets ` +
            `allow at most ${buckets}×${buckets} (an image size of at most ${16 * buckets})`,
        );
      }
      return new OfaPipeline(backend, model, tokenizer, imageSize, weights, ownsBackend);
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
      const beamSize = options.beamSize ?? 5;
      if (!Number.isInteger(beamSize) || beamSize < 1) {
        throw new RangeError(`caption: beam size must be a positive integer, got ${beamSize}`);
      }
      const start = performance.now();
      const promptTokens = this.#prompt(CAPTION_PROMPT, 'caption prompt');
      const { encoded, preprocessMs, encoderMs } = await this.#encode(image, promptTokens);
      const decodeStart = performance.now();
      // beamSearch keeps min(beam, V − 1) sequences alive; the decoder holds that many from step 0.
      const decoder = new OfaStepDecoder(this.model, encoded, Math.min(beamSize, this.config.vocabSize - 1));
      try {
        const hypotheses = await beamSearch(decoder, { ...options, sourceLength: promptTokens.length });
        const best = hypotheses[0];
        if (best === undefined) throw new Error('caption: beam search ended without a finished hypothesis');
        const decoderMs = performance.now() - decodeStart;
        const tokens = Array.from(best.tokens);
        const rawText = this.tokenizer.decode(tokens);
        return {
          text: captionPostprocess(rawText),
          rawText,
          tokens,
          score: best.score,
          positionalScores: Array.from(best.positionalScores),
          timing: timing(start, preprocessMs, encoderMs, decoderMs, decoder.length),
        };
      } finally {
        decoder.dispose();
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
      const start = performance.now();
      const what = options.premise === undefined ? 'hypothesis' : 'premise and hypothesis';
      const promptTokens = this.#prompt(entailmentPrompt(hypothesis, options.premise), `entailment prompt (${what})`);
      const { encoded, preprocessMs, encoderMs } = await this.#encode(image, promptTokens);
      try {
        const decodeStart = performance.now();
        const decoderIds = promptTokens.slice(0, -1);
        const logProbs = await this.#lastPositionLogProbs(encoded, decoderIds);
        const decoderMs = performance.now() - decodeStart;
        const reading = readEntailment(logProbs);
        const answerOf = (label: EntailmentLabel): EntailmentAnswer => ANSWER_OF_LABEL.get(label)!;
        const logProbOf = (label: EntailmentLabel): number => logProbs[answerOf(label).tokenId]!;
        return {
          label: reading.label,
          answer: answerOf(reading.label).text,
          probabilities: reading.probabilities,
          logProbs: {
            entailment: logProbOf('entailment'),
            contradiction: logProbOf('contradiction'),
            neutral: logProbOf('neutral'),
          },
          promptTokens,
          timing: timing(start, preprocessMs, encoderMs, decoderMs, decoderIds.length),
        };
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

  async #encode(
    image: ImageInput,
    promptTokens: readonly number[],
  ): Promise<{ encoded: EncoderOutput; preprocessMs: number; encoderMs: number }> {
    const start = performance.now();
    let bytes: Uint8Array;
    let label: string;
    if (typeof image === 'string') {
      const { readFile } = await import('node:fs/promises');
      label = image;
      bytes = await readFile(image).catch((error: unknown) => {
        throw new Error(`image ${image}: ${fsReason(error)}`);
      });
    } else {
      label = 'image';
      bytes = image;
    }
    const size = this.imageSize;
    const { pixels } = preprocessImage(bytes, size, label);
    const encodeStart = performance.now();
    const input = this.backend.upload(pixels, [1, 3, size, size], 'f32');
    try {
      const encoded = this.model.encode(input, promptTokens);
      try {
        await this.backend.sync();
      } catch (error) {
        encoded.dispose();
        throw error;
      }
      return { encoded, preprocessMs: encodeStart - start, encoderMs: performance.now() - encodeStart };
    } finally {
      input.dispose();
    }
  }

  /** Teacher-forced decoder pass over `ids`; the log-softmax of the last position's logits, `[V]`. */
  async #lastPositionLogProbs(encoded: EncoderOutput, ids: readonly number[]): Promise<Float32Array> {
    const backend = this.backend;
    const decoded = this.model.decodeFull(encoded, [ids]);
    try {
      const logProbs = backend.tidy(() => {
        const last = backend.slice(decoded.logits, 1, ids.length - 1, ids.length);
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
    } finally {
      decoded.dispose();
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
