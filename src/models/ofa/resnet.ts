/**
 * OFA's image backbone (ofa-arch.md §4.1): a torchvision-style ResNet "v1.5" (stride on the 3×3
 * conv) truncated after stage 3 — output stride 16, 1024 channels. Every BatchNorm is already
 * folded into its conv (weights.ts), so each conv is one `conv2d` with a bias; ReLUs and the
 * shortcut addition run in the conv's epilogue.
 */
import type { Backend } from '../../backend/backend.js';
import type { Tensor } from '../../tensor.js';
import type { BottleneckWeights, ResnetWeights } from './weights.js';

/** Stride of each stage's first block (stage 1 keeps the stem's resolution). */
const STAGE_STRIDES = [1, 2, 2] as const;

/** Stem: conv1 7×7/2 pad 3 + bn1 + ReLU, then max-pool 3×3/2 pad 1 (S → S/4). */
function stem(backend: Backend, weights: ResnetWeights, pixels: Tensor): Tensor {
  const { weight, bias } = weights.stem;
  const x = backend.conv2d(pixels, weight, { stride: 2, padding: 3, bias, activation: 'relu' });
  return backend.maxPool2d(x, { kernel: 3, stride: 2, padding: 1 });
}

/** out = ReLU(shortcut + bn3(conv3(ReLU(bn2(conv2(ReLU(bn1(conv1(x))))))))). */
function bottleneck(backend: Backend, block: BottleneckWeights, x: Tensor, stride: number): Tensor {
  const { conv1, conv2, conv3, downsample } = block;
  const shortcut = downsample ? backend.conv2d(x, downsample.weight, { stride, bias: downsample.bias }) : x;
  let h = backend.conv2d(x, conv1.weight, { bias: conv1.bias, activation: 'relu' });
  h = backend.conv2d(h, conv2.weight, { stride, padding: 1, bias: conv2.bias, activation: 'relu' });
  return backend.conv2d(h, conv3.weight, { bias: conv3.bias, residual: shortcut, activation: 'relu' });
}

/** Output size of a convolution or pooling window along one axis. */
function windowOutput(size: number, kernel: number, stride: number, padding: number): number {
  return Math.floor((size + 2 * padding - kernel) / stride) + 1;
}

/** The feature map's side for an input side `size`: the stem conv, the pool, and stages 2–3 each halve it. */
export function resnetOutputSize(size: number): number {
  let side = windowOutput(windowOutput(size, 7, 2, 3), 3, 2, 1);
  for (const stride of STAGE_STRIDES) side = windowOutput(side, 3, stride, 1);
  return side;
}

/**
 * Pixels `[B, 3, S, S]` (normalized to [−1, 1], §3) → features `[B, 1024, S/16, S/16]`. Each
 * block's input is freed as soon as the block has run, so only a block's own activations are
 * alive at a time.
 */
export function resnetFeatures(backend: Backend, weights: ResnetWeights, pixels: Tensor): Tensor {
  let x = backend.tidy(() => stem(backend, weights, pixels));
  weights.stages.forEach((blocks, stage) => {
    blocks.forEach((block, b) => {
      const input = x;
      x = backend.tidy(() => bottleneck(backend, block, input, b === 0 ? STAGE_STRIDES[stage]! : 1));
      input.dispose();
    });
  });
  return x;
}
