/// <reference types="@webgpu/types" preserve="true" />
/**
 * mue-engine's public API. Most callers need only `OfaPipeline` (caption and entail images, with
 * MuE early exits through the `exits` option); the layers below it are exported for embedding,
 * testing and tools: MuE's exit machinery, the OFA model and its step decoder, the generators, the
 * two backends, tensors, the tokenizer, image preprocessing, checkpoint I/O, conversion and golden
 * verification. The WebGPU types (`GPUDevice`, …) come from `@webgpu/types`, a dependency: the
 * reference above carries them into the declarations, so a TypeScript project compiles against
 * them without `skipLibCheck`.
 */

// ---- high level -----------------------------------------------------------------------------
export {
  NO_EXIT,
  OfaPipeline,
  createBackend,
  resolveExitSettings,
  type BackendName,
  type CaptionOptions,
  type CaptionResult,
  type EntailmentOptions,
  type EntailmentResult,
  type ExitSettings,
  type ImageInput,
  type ModelSource,
  type OfaPipelineOptions,
  type PipelineExitReport,
  type ResolvedExitSettings,
  type Timing,
} from './pipeline.js';

// ---- MuE dynamic early exits (mue-spec.md) ---------------------------------------------------------
export { ExitTracker, type DecisionScope, type DecisionSite, type ExitOptions, type LayerDecision } from './mue/exit.js';
export { exitReport, readStreamReport, reportOfRows, type ExitReport, type StreamReport } from './mue/report.js';
export { decoderThreshold } from './mue/schedule.js';
export {
  encodeBatchWithExits,
  encodeWithExits,
  type EncoderExitOptions,
  type EncoderExitResult,
  type ExitEncoder,
} from './mue/encoder-exits.js';
export {
  ExitingStepDecoder,
  exitingStep,
  type CacheFill,
  type DecoderExitSettings,
  type DecoderStepExitOptions,
  type ExitingStepResult,
} from './mue/decoder-exits.js';
export { decodeFullWithExits, type FullPassExitOptions, type FullPassExitResult } from './mue/full-pass-exits.js';

// ---- the model --------------------------------------------------------------------------------
export { OfaModel, type CheckpointBytes, type OfaModelFiles, type OfaModelLoadOptions } from './models/ofa/model.js';
export {
  OFA_PRESETS,
  configFromJson,
  validateConfig,
  type EncoderMode,
  type OfaConfig,
  type OfaPresetName,
  type ResnetType,
} from './models/ofa/config.js';
export type { EncoderBatch, EncoderOutput } from './models/ofa/encoder.js';
export type { DecoderOutput, DecodingSession, KeyValues, LayerCache } from './models/ofa/decoder.js';
export type { LoadProgress } from './models/ofa/weights.js';
export { OfaStepDecoder } from './models/ofa/step-decoder.js';
export { verifyGolden, type VerifyOptions, type VerifyResult, type VerifyRow } from './models/ofa/verify.js';
export {
  ConversionError,
  convertOfaCheckpoint,
  type ConversionSummary,
  type ConvertOptions,
  type OfaWeightDType,
} from './models/ofa/convert.js';

// ---- generation -------------------------------------------------------------------------------
export type { StepDecoder } from './generate/decoder.js';
export { beamSearch, beamSearchBatch, maxGenerationLength, type BeamSearchOptions, type Hypothesis } from './generate/beam-search.js';
export { greedy, type GreedyOptions, type GreedyResult } from './generate/greedy.js';
export {
  CAPTION_PROMPT,
  ENTAILMENT_ANSWERS,
  ENTAILMENT_MAX_WORDS,
  captionPostprocess,
  entailmentPrompt,
  entailmentTruncations,
  readEntailment,
  type EntailmentAnswer,
  type EntailmentLabel,
  type EntailmentReading,
  type EntailmentTruncation,
} from './generate/tasks.js';

// ---- backends and tensors ------------------------------------------------------------------------
export type {
  Activation,
  AttentionOptions,
  Backend,
  Conv2dOptions,
  MatmulOptions,
  Pool2dOptions,
  TopK,
} from './backend/backend.js';
export { CpuBackend } from './backend/cpu/cpu-backend.js';
export {
  WebGpuBackend,
  createWebGpuBackend,
  type DeviceCapabilities,
  type WebGpuBackendOptions,
} from './backend/webgpu/index.js';
export { Tensor, sameShape, shapeToString, sizeOf, type DType, type HostArray, type Shape } from './tensor.js';

// ---- evaluation (mue eval) ----------------------------------------------------------------------
export {
  readCaptionSplit,
  readEntailmentSplit,
  type CaptionItem,
  type EntailmentItem,
  type EvalSplit,
  type EvalTask,
} from './eval/dataset.js';
export {
  evaluateCaptions,
  evaluateEntailment,
  type EvalSetting,
  type EvaluateOptions,
  type ItemRecord,
  type SettingResult,
  type StreamLayers,
  type Thresholds,
} from './eval/evaluate.js';
export { AUTHORS_THRESHOLDS, NO_EXIT_SETTING, paretoFront, sweepSettings } from './eval/sweep.js';
export { sweepPlotSpec, sweepPlotSvg } from './eval/plot.js';
export { compareWithReference, readReference, type MueReference, type ReferenceAgreement } from './eval/reference.js';
export { ciderD, type CiderResult } from './eval/cider.js';
export { corpusBleu } from './eval/bleu.js';
export { ptbTokenize } from './eval/ptb.js';

// ---- text and images ----------------------------------------------------------------------------
export { OfaTokenizer, preCaption, BOS_ID, EOS_ID, PAD_ID, UNK_ID, type OfaTokenizerFiles } from './text/bpe.js';
export {
  DEFAULT_MAX_PIXELS,
  ImageDecodeError,
  decodeImage,
  preprocessImage,
  resizeBicubic,
  toModelInput,
  type DecodeOptions,
  type RgbImage,
} from './image/preprocess.js';

// ---- checkpoint files ---------------------------------------------------------------------------
export {
  SafetensorsError,
  SafetensorsFile,
  encodeSafetensors,
  writeSafetensors,
  type SafetensorsDType,
  type TensorEntry,
  type TensorInfo,
} from './io/safetensors.js';
export { TorchCheckpoint, TorchCheckpointError, loadTorchCheckpoint } from './io/torch-checkpoint.js';
export type { ByteSource } from './io/byte-source.js';
export { blobSource, openFetchSource, type FetchSourceOptions } from './io/fetch-source.js';
export { FileReadError, openByteSource, type FileLocation } from './io/location.js';
export { DEFAULT_MODEL, TOKENIZER_FILES } from './assets.js';
