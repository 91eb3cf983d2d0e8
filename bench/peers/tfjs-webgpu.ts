/**
 * Peer: TF.js with `@tensorflow/tfjs-backend-webgpu`, on the GPU object we hand in (the same
 * Dawn instance and adapter as our engine).
 *
 * TF.js has no fused layer norm or attention: they are composed the way TF.js users (and
 * tfjs-layers) write them. Convolution uses TF.js's native NHWC layout. Timing follows
 * `peer.ts`: a case's tensors are created once and reach the GPU in the warm-up loop (TF.js
 * uploads lazily on first use); a loop queues `batch` ops and awaits the last one's `data()`.
 * TF.js waits with `mapAsync`, so Dawn's busy polling (see `src/backend/webgpu/wait.ts`)
 * competes with lavapipe during its loops: that is how TF.js runs in Node, so it is measured as is.
 *
 * TF.js does not check WebGPU errors: a kernel the device rejects (e.g. a binding over
 * `maxStorageBufferBindingSize`) returns garbage fast. The first loop of a case runs inside error
 * scopes, and a case with an error is reported as skipped.
 */
import type { Tensor, Tensor4D } from '@tensorflow/tfjs-core';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { benchData, measure, type Conv2dCase, type KernelPeer, type LoopFactory, type TimedLoop, type Timing, type TimingSettings } from './peer.js';

type Tf = typeof import('@tensorflow/tfjs-core');

/** A WebGPU error raised by TF.js's kernels. */
class DeviceError extends Error {}

/**
 * TF.js looks for WebGPU at `navigator.gpu`, and only when its backend module is first imported.
 * Returns the undo: a live reference to Dawn's GPU object keeps Node from exiting.
 */
function exposeGpu(gpu: GPU): () => void {
  const host = globalThis as { navigator?: object };
  if (host.navigator) {
    const nav = host.navigator;
    Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
    return () => void Reflect.deleteProperty(nav, 'gpu');
  }
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  return () => void Reflect.deleteProperty(globalThis, 'navigator');
}

export async function createTfjsWebGpuPeer(gpu: GPU, settings: TimingSettings): Promise<KernelPeer> {
  const unexpose = exposeGpu(gpu);
  const tf: Tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('TF.js could not initialise its WebGPU backend');
  await tf.ready();
  const device = (tf.backend() as WebGPUBackend).device;

  async function checked(run: () => Promise<void>): Promise<void> {
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    await run();
    const errors = [await device.popErrorScope(), await device.popErrorScope()];
    const error = errors.find((e) => e !== null);
    if (error) throw new DeviceError(`WebGPU error in TF.js: ${error.message.split('\n')[0]}`);
  }

  async function time(prepare: LoopFactory): Promise<Timing> {
    try {
      return await measure(prepare, settings);
    } catch (e) {
      if (e instanceof DeviceError) return { skipped: e.message };
      throw e;
    }
  }

  /** Loops of `batch` calls of `op` on tensors of the given shapes. */
  function loops(shapes: readonly (readonly number[])[], op: (xs: readonly Tensor[]) => Tensor): LoopFactory {
    return async (batch: number): Promise<TimedLoop> => {
      const inputs = shapes.map((s, i) => tf.tensor(benchData(s.reduce((a, b) => a * b, 1), i + 1), [...s]));
      const loop = async (): Promise<void> => {
        const outputs = Array.from({ length: batch }, () => tf.tidy(() => op(inputs)));
        await outputs[batch - 1]!.data();
        for (const t of outputs) t.dispose();
      };
      let first = true;
      return {
        async run() {
          if (!first) return loop();
          first = false;
          return checked(loop);
        },
        async dispose() {
          for (const t of inputs) t.dispose();
        },
      };
    };
  }

  return {
    engine: 'tfjs-webgpu',
    matmul: (m, k, n) => time(loops([[m, k], [k, n]], ([a, b]) => tf.matMul(a!, b!))),
    layerNorm: (rows, cols) =>
      time(
        loops([[rows, cols], [cols], [cols]], ([x, weight, bias]) => {
          // As tfjs-layers' LayerNormalization: moments kept 2-D, affine parameters broadcast as rows.
          const { mean, variance } = tf.moments(x!, -1, true);
          return tf.batchNorm(x!, mean, variance, tf.reshape(bias!, [1, cols]), tf.reshape(weight!, [1, cols]), 1e-5);
        }),
      ),
    attention: (batch, heads, tokens, headDim) => {
      const dims = [batch, tokens, heads * headDim];
      const split = (x: Tensor): Tensor => tf.transpose(tf.reshape(x, [batch, tokens, heads, headDim]), [0, 2, 1, 3]);
      return time(
        loops([dims, dims, dims], ([q, k, v]) => {
          const scores = tf.mul(tf.matMul(split(q!), split(k!), false, true), 1 / Math.sqrt(headDim));
          const context = tf.matMul(tf.softmax(scores), split(v!));
          return tf.reshape(tf.transpose(context, [0, 2, 1, 3]), dims);
        }),
      );
    },
    conv2d: (c: Conv2dCase) =>
      time(
        loops(
          [
            [c.batch, c.height, c.width, c.cin],
            [c.kernel, c.kernel, c.cin, c.cout],
          ],
          ([x, w]) => tf.conv2d(x as Tensor4D, w as Tensor4D, c.stride, c.pad),
        ),
      ),
    dispose: async () => {
      tf.engine().reset();
      unexpose();
    },
  };
}
