/**
 * The generators' view of an OFA model (src/generate/decoder.ts): a `StepDecoder` over one
 * `DecodingSession`. Each step runs the decoder through its key/value cache, takes the
 * log-softmax of the logits on the device (fp32, as fairseq does) and reads back `[B, V]`.
 *
 * Subclasses may replace how a step runs the decoder (`forward`, e.g. MuE's early exits in
 * src/mue/decoder-exits.ts) and read what else they need of a step together with its
 * log-probabilities (`readAlongside`: on WebGPU one submission and one wait for both).
 */
import type { StepDecoder } from '../../generate/decoder.js';
import type { Tensor } from '../../tensor.js';
import type { EncoderOutput } from './encoder.js';
import type { DecodingSession } from './decoder.js';
import type { OfaModel } from './model.js';

export class OfaStepDecoder implements StepDecoder {
  readonly vocabSize: number;
  protected readonly model: OfaModel;
  protected readonly session: DecodingSession;

  /**
   * A decoder for `beams` sequences attending to `encoderOutput` (which the caller keeps alive
   * until `dispose`). Beam search needs `beams` = its beam size from the first step on.
   */
  constructor(model: OfaModel, encoderOutput: EncoderOutput, beams: number) {
    this.model = model;
    this.vocabSize = model.config.vocabSize;
    this.session = model.startDecoding(encoderOutput, beams);
  }

  /** Tokens fed so far per sequence (the number of steps run). */
  get length(): number {
    return this.session.length;
  }

  async step(tokens: Int32Array, step: number): Promise<Float32Array> {
    if (step !== this.session.length) {
      throw new Error(
        `OFA step decoder: step ${step} was requested, but ${this.session.length} tokens were fed so far ` +
          `(steps must run in order from 0)`,
      );
    }
    const backend = this.model.backend;
    const logits = await this.forward(Array.from(tokens), step);
    const logProbs = backend.logSoftmax(logits);
    logits.dispose();
    try {
      const [values] = await Promise.all([logProbs.read(), this.readAlongside(step)]);
      if (!(values instanceof Float32Array)) {
        throw new Error(`OFA step decoder: log-probabilities read back as ${logProbs.dtype}, expected f32`);
      }
      return values;
    } finally {
      logProbs.dispose();
    }
  }

  /** Runs the decoder for one step: one token per sequence → logits `[B, V]` (owned by the caller). */
  protected forward(tokens: number[], _step: number): Tensor | Promise<Tensor> {
    return this.session.step(tokens);
  }

  /**
   * Reads what a subclass needs of step `step`, started in the same run of JavaScript as the read
   * of its log-probabilities (so it must start its reads before its first `await`).
   */
  protected readAlongside(_step: number): Promise<void> {
    return Promise.resolve();
  }

  reorder(indices: Int32Array): void {
    this.session.reorder(Array.from(indices));
  }

  /** Frees the session's caches (not the encoder output). */
  dispose(): void {
    this.session.dispose();
  }
}
