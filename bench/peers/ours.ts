/**
 * Our engine as a benchmark peer, through the `Backend` op interface (WebGPU or CPU).
 *
 * Timing follows `peer.ts`: inputs are uploaded and synced before timing; a loop records
 * `batch` ops inside one `tidy` (on WebGPU: one command encoder, submitted by the read) and
 * reads the last result back.
 */
import type { Backend } from '../../src/backend/backend.js';
import type { Shape, Tensor } from '../../src/tensor.js';
import { benchData, measure, type Conv2dCase, type Engine, type KernelPeer, type LoopFactory, type TimedLoop, type TimingSettings } from './peer.js';

export function createBackendPeer(engine: Extract<Engine, 'ours-webgpu' | 'ours-cpu'>, backend: Backend, settings: TimingSettings): KernelPeer {
  function loops(shapes: readonly Shape[], op: (xs: readonly Tensor[]) => Tensor): LoopFactory {
    return async (batch: number): Promise<TimedLoop> => {
      const inputs = shapes.map((s, i) => backend.upload(benchData(s.reduce((a, b) => a * b, 1), i + 1), s));
      await backend.sync();
      return {
        async run() {
          const last = backend.tidy(() => {
            let out = op(inputs);
            for (let i = 1; i < batch; i++) out = op(inputs);
            return out;
          });
          await backend.read(last);
          last.dispose();
        },
        async dispose() {
          for (const t of inputs) t.dispose();
        },
      };
    };
  }

  return {
    engine,
    matmul: (m, k, n) => measure(loops([[m, k], [k, n]], ([a, b]) => backend.matmul(a!, b!)), settings),
    layerNorm: (rows, cols) =>
      measure(loops([[rows, cols], [cols], [cols]], ([x, weight, bias]) => backend.layerNorm(x!, weight!, bias!, 1e-5)), settings),
    attention: (batch, heads, tokens, headDim) => {
      const dims = [batch, tokens, heads * headDim];
      const options = { heads, scale: 1 / Math.sqrt(headDim) };
      return measure(loops([dims, dims, dims], ([q, k, v]) => backend.attention(q!, k!, v!, options)), settings);
    },
    conv2d: (c: Conv2dCase) =>
      measure(
        loops(
          [
            [c.batch, c.cin, c.height, c.width],
            [c.cout, c.cin, c.kernel, c.kernel],
          ],
          ([x, w]) => backend.conv2d(x!, w!, { stride: c.stride, padding: c.pad }),
        ),
        settings,
      ),
    dispose: async () => backend.destroy(),
  };
}
