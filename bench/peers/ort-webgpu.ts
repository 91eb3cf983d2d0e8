/**
 * Peer: onnxruntime-node's WebGPU execution provider.
 *
 * The linux-x64 binary of onnxruntime-node ≥ 1.2x bundles the WebGPU EP with its own copy of
 * Dawn, which finds the same Vulkan adapter (lavapipe here) as npm `webgpu`; it cannot share our
 * GPUDevice. Each case is a model built in-process (`onnx-model.ts`) holding `batch` identical
 * nodes that read the same graph inputs, so one `session.run` is one timing loop (see
 * `peer.ts`): the inputs are fed as GPU tensors produced once by an Identity model (so no
 * upload is timed), every output but the last stays on the GPU, and the last is read back.
 * Graph optimisations are off, else common-subexpression elimination would merge the nodes;
 * CPU fallback is off, so an op without a WebGPU kernel is reported as skipped instead of being
 * timed on the CPU.
 */
import * as ort from 'onnxruntime-node';
import { encodeOnnxModel, type OnnxAttribute } from './onnx-model.js';
import { benchData, measure, type Conv2dCase, type KernelPeer, type LoopFactory, type TimedLoop, type Timing, type TimingSettings } from './peer.js';

/** LayerNormalization entered the default domain in opset 17. */
const OPSETS = { '': 17, 'com.microsoft': 1 };

/** ORT's refusal to place a node on the CPU when fallback is disabled: the op has no WebGPU kernel. */
class UnsupportedOnWebGpu extends Error {}

interface Operand {
  name: string;
  dims: readonly number[];
}

interface OpSpec {
  opType: string;
  domain?: string;
  attributes?: Readonly<Record<string, OnnxAttribute>>;
  inputs: readonly Operand[];
  outputDims: readonly number[];
}

function sessionOptions(outputs: Readonly<Record<string, ort.Tensor.DataLocation>>): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['webgpu'],
    graphOptimizationLevel: 'disabled',
    logSeverityLevel: 3,
    preferredOutputLocation: outputs,
    extra: { session: { disable_cpu_ep_fallback: '1' } },
  };
}

async function createSession(model: Uint8Array, outputs: Readonly<Record<string, ort.Tensor.DataLocation>>): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(model, sessionOptions(outputs));
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (message.includes('fallback to CPU EP has been explicitly disabled')) {
      throw new UnsupportedOnWebGpu('no WebGPU kernel in onnxruntime (the node would run on the CPU EP)');
    }
    throw e;
  }
}

/** Device-resident copies of the inputs, made by running an Identity model once. */
async function uploadOnce(inputs: readonly Operand[]): Promise<{ feeds: Record<string, ort.Tensor>; release: () => Promise<void> }> {
  const model = encodeOnnxModel({
    nodes: inputs.map(({ name }) => ({ opType: 'Identity', inputs: [`${name}_host`], outputs: [name] })),
    inputs: inputs.map(({ name, dims }) => ({ name: `${name}_host`, dims })),
    outputs: inputs,
    opsets: OPSETS,
  });
  const session = await createSession(model, Object.fromEntries(inputs.map(({ name }) => [name, 'gpu-buffer' as const])));
  const host = Object.fromEntries(
    inputs.map(({ name, dims }, i) => [`${name}_host`, new ort.Tensor('float32', benchData(dims.reduce((a, b) => a * b, 1), i + 1), dims)]),
  );
  const feeds = await session.run(host);
  return {
    feeds,
    release: async () => {
      for (const t of Object.values(feeds)) t.dispose();
      await session.release();
    },
  };
}

function loops(op: OpSpec): LoopFactory {
  return async (batch: number): Promise<TimedLoop> => {
    const outputs = Array.from({ length: batch }, (_, i) => `y${i}`);
    const model = encodeOnnxModel({
      nodes: outputs.map((y) => ({
        opType: op.opType,
        ...(op.domain === undefined ? {} : { domain: op.domain }),
        ...(op.attributes === undefined ? {} : { attributes: op.attributes }),
        inputs: op.inputs.map((i) => i.name),
        outputs: [y],
      })),
      inputs: op.inputs,
      outputs: outputs.map((name) => ({ name, dims: op.outputDims })),
      opsets: OPSETS,
    });
    const session = await createSession(model, Object.fromEntries(outputs.map((y, i) => [y, i === batch - 1 ? 'cpu' : 'gpu-buffer'])));
    const inputs = await uploadOnce(op.inputs);
    return {
      async run() {
        const results = await session.run(inputs.feeds);
        for (const t of Object.values(results)) t.dispose();
      },
      async dispose() {
        await inputs.release();
        await session.release();
      },
    };
  };
}

export async function createOrtWebGpuPeer(settings: TimingSettings): Promise<KernelPeer> {
  const webgpu = ort.listSupportedBackends().find((b) => b.name === 'webgpu');
  if (!webgpu) throw new Error(`onnxruntime-node ${ort.env.versions.node ?? ''} has no WebGPU execution provider on ${process.platform}-${process.arch}`);

  async function time(op: OpSpec): Promise<Timing> {
    try {
      return await measure(loops(op), settings);
    } catch (e) {
      if (e instanceof UnsupportedOnWebGpu) return { skipped: e.message };
      throw e;
    }
  }

  return {
    engine: 'ort-webgpu',
    matmul: (m, k, n) =>
      time({ opType: 'MatMul', inputs: [{ name: 'a', dims: [m, k] }, { name: 'b', dims: [k, n] }], outputDims: [m, n] }),
    layerNorm: (rows, cols) =>
      time({
        opType: 'LayerNormalization',
        attributes: { axis: { int: -1 }, epsilon: { float: 1e-5 } },
        inputs: [{ name: 'x', dims: [rows, cols] }, { name: 'weight', dims: [cols] }, { name: 'bias', dims: [cols] }],
        outputDims: [rows, cols],
      }),
    attention: (batch, heads, tokens, headDim) => {
      const dims = [batch, tokens, heads * headDim];
      return time({
        opType: 'MultiHeadAttention',
        domain: 'com.microsoft',
        attributes: { num_heads: { int: heads }, scale: { float: 1 / Math.sqrt(headDim) } },
        inputs: [{ name: 'q', dims }, { name: 'k', dims }, { name: 'v', dims }],
        outputDims: dims,
      });
    },
    conv2d: (c: Conv2dCase) => {
      const out = (size: number): number => Math.floor((size + 2 * c.pad - c.kernel) / c.stride) + 1;
      return time({
        opType: 'Conv',
        attributes: {
          kernel_shape: { ints: [c.kernel, c.kernel] },
          strides: { ints: [c.stride, c.stride] },
          pads: { ints: [c.pad, c.pad, c.pad, c.pad] },
        },
        inputs: [
          { name: 'x', dims: [c.batch, c.cin, c.height, c.width] },
          { name: 'w', dims: [c.cout, c.cin, c.kernel, c.kernel] },
        ],
        outputDims: [c.batch, c.cout, out(c.height), out(c.width)],
      });
    },
    // onnxruntime keeps its Dawn device for the life of the process; sessions are released per case.
    dispose: async () => {},
  };
}
