/**
 * The `mue` command line, in process through `runCli` (captured stdout / stderr) and once as a
 * child process through the real entry point. Everything runs on the CPU backend but one
 * `verify --backend webgpu`. Verification uses the shipped golden model (weights/ofa-tiny-random);
 * captioning and entailment the shipped demo model (weights/ofa-tiny-demo: the golden model grown
 * to OFA's vocabulary) at a 32-pixel input: the text is nonsense, so the checks are about structure.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { EOS_ID, OFA_VOCAB_SIZE } from '../../src/text/bpe.js';
import { mue, mueOnTerminal } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The shipped models, named independently of src/cli/common.ts's defaults. */
const GOLDEN_MODEL = join(ROOT, 'weights/ofa-tiny-random');
const DEMO_MODEL = join(ROOT, 'weights/ofa-tiny-demo');
const IMAGE = fileURLToPath(new URL('../fixtures/preprocess/photo-97x61.png', import.meta.url));
const NOT_OFA_CHECKPOINT = fileURLToPath(new URL('../fixtures/checkpoints/small.pt', import.meta.url));
const FAIRSEQ_CHECKPOINT = fileURLToPath(new URL('../fixtures/checkpoints/fairseq-1gpu.pt', import.meta.url));
/** The reference PyTorch checkpoint of the golden model, in the project's shared data when it is beside the repository. */
const GOLDEN_CHECKPOINT = join(ROOT, '../shared/golden/checkpoints/ofa-tiny-random.bin');
const LABELS = ['entailment', 'contradiction', 'neutral'];

describe('mue (in process)', () => {
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'mue-cli-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  const modelArgs = (): string[] => ['--weights', DEMO_MODEL, '--backend', 'cpu', '--image-size', '32'];

  it('prints help naming every command and the WebGPU → CPU fallback', async () => {
    const top = await mue('--help');
    expect(top.status).toBe(0);
    for (const command of ['caption', 'entail', 'verify', 'convert', 'preprocess']) expect(top.stdout).toContain(command);
    const caption = await mue('caption', '--help');
    expect(caption.stdout).toMatch(/default: webgpu, falling back to cpu/);
  });

  it('verify passes on the shipped golden model (256×256) and prints the table', async () => {
    const out = join(scratch, 'engine.safetensors');
    const run = await mue('verify', GOLDEN_MODEL, '--backend', 'cpu', '--out', out);
    expect(run.stderr).not.toContain('mue: verification failed');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^tensor\s+shape\s+max \|Δ\|/);
    expect(run.stdout).toMatch(/encoder\.last_hidden_state\s+\[1, 268, 256\]\s+\S+e-\d+\s+ok/);
    expect(run.stdout).toMatch(/greedy ids \(11\): 0 498 683 .* ok/);
    expect(run.stdout).toMatch(/verify: 14 tensors within 0\.0001 and the greedy ids match \(cpu/);
    const written = await SafetensorsFile.open(out);
    expect(written.has('greedy.tokens')).toBe(true);
    await written.close();
  });

  it('verify passes on WebGPU too', async () => {
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    const run = await mue('verify', GOLDEN_MODEL, '--backend', 'webgpu');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/verify: 14 tensors within 0\.0001 and the greedy ids match \(webgpu/);
  });

  it('verify exits 1 when a tensor is beyond the tolerance', async () => {
    const run = await mue('verify', GOLDEN_MODEL, '--backend', 'cpu', '--tolerance', '1e-9');
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/encoder\.hidden_states\.4 .* FAIL/);
    expect(run.stderr).toMatch(/^mue: verification failed on cpu: \d+ of 14 tensors beyond tolerance 1e-9\n$/);
  });

  it('convert refuses a checkpoint with a non-float tensor, naming it, and writes nothing', async () => {
    const out = join(scratch, 'small.safetensors');
    const run = await mue('convert', NOT_OFA_CHECKPOINT, out);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^mue: .*small\.pt: '[^']+' is bool; only floating-point weights are converted/);
    expect(run.stderr).not.toContain('    at ');
    expect(existsSync(out)).toBe(false);
  });

  it('convert wants a folder or a .safetensors file as output, not a checkpoint name', async () => {
    const run = await mue('convert', NOT_OFA_CHECKPOINT, join(scratch, 'out.bin'));
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/out\.bin: give a folder .* or a file name ending in \.safetensors/);
  });

  it('convert shows a progress bar when stderr is a terminal', async () => {
    const run = await mueOnTerminal('convert', FAIRSEQ_CHECKPOINT, join(scratch, 'tty-model'));
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/converting \[=+\] 100% \| 1\.3\/1\.3 MB/);
  });

  it('convert names a missing input and an input that is already safetensors', async () => {
    const missing = await mue('convert', join(scratch, 'nowhere.pt'), join(scratch, 'out'));
    expect(missing.stderr).toMatch(/^mue: checkpoint .*nowhere\.pt: no such file or directory\n$/);
    const safetensors = await mue('convert', join(GOLDEN_MODEL, 'weights.safetensors'), join(scratch, 'out'));
    expect(safetensors.status).toBe(1);
    expect(safetensors.stderr).toMatch(/weights\.safetensors: this is already a safetensors file, not a PyTorch checkpoint/);
  });

  it('convert writes a model folder, creating it, from a single-GPU fairseq checkpoint', async () => {
    const out = join(scratch, 'models', 'fairseq-1gpu');
    const run = await mue('convert', FAIRSEQ_CHECKPOINT, out);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/config: from cfg\['model'\] \(256 wide, 4\+4 layers, resnet50, vocabulary 1000, images 480×480\)/);
    expect(existsSync(join(out, 'weights.safetensors')) && existsSync(join(out, 'config.json'))).toBe(true);
  });

  it.skipIf(!existsSync(GOLDEN_CHECKPOINT))('convert writes the golden PyTorch checkpoint and prints the summary', async () => {
    const out = join(scratch, 'converted.safetensors');
    const run = await mue('convert', GOLDEN_CHECKPOINT, out, '--dtype', 'f16');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^converted .*ofa-tiny-random\.bin \(huggingface state dict\) → .*converted\.safetensors in /);
    expect(run.stdout).toContain('  tied: decoder.output_projection.weight → encoder.embed_tokens.weight (stored once)\n');
    const [converted, shipped] = await Promise.all([
      SafetensorsFile.open(out),
      SafetensorsFile.open(join(GOLDEN_MODEL, 'weights.safetensors')),
    ]);
    try {
      expect(run.stdout).toContain(`  tensors written: ${converted.tensors.size} (f16)\n`);
      expect([...converted.tensors.keys()].sort()).toEqual([...shipped.tensors.keys()].sort());
    } finally {
      await Promise.all([converted.close(), shipped.close()]);
    }
  });

  it('caption --json gives a string, token ids of the vocabulary ending in EOS, finite scores and timings', async () => {
    const run = await mue('caption', IMAGE, ...modelArgs(), '--beam', '3', '--json');
    expect(run.stderr).toMatch(/^mue: loaded .* \(\d+\.\d MB\) on cpu in/);
    expect(run.status).toBe(0);
    const result = JSON.parse(run.stdout) as {
      text: unknown;
      tokens: number[];
      score: number;
      positionalScores: number[];
      backend: string;
      imageSize: number;
      timing: Record<string, number>;
    };
    expect(typeof result.text).toBe('string');
    expect(result.backend).toBe('cpu');
    expect(result.imageSize).toBe(32);
    expect(result.tokens.length).toBeGreaterThanOrEqual(2);
    expect(result.tokens.length).toBeLessThanOrEqual(17);
    expect(result.tokens.at(-1)).toBe(EOS_ID);
    for (const id of result.tokens) expect(Number.isInteger(id) && id >= 0 && id < OFA_VOCAB_SIZE).toBe(true);
    expect(result.positionalScores).toHaveLength(result.tokens.length);
    for (const score of [result.score, ...result.positionalScores]) expect(Number.isFinite(score)).toBe(true);
    expect(result.timing['decoderTokens']).toBe(result.tokens.length);
    for (const key of ['preprocessMs', 'encoderMs', 'decoderMs', 'decoderMsPerToken', 'totalMs']) {
      expect(result.timing[key]).toBeGreaterThan(0);
    }
  });

  it('caption without --weights runs the shipped demo model', async () => {
    const run = await mue('caption', IMAGE, '--backend', 'cpu', '--image-size', '32');
    expect(run.stderr).toContain(`mue: loaded ${DEMO_MODEL} (`);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^.*\S.*\n$/);
  });

  it('entail --json gives one of the three labels with probabilities over the answers', async () => {
    const run = await mue('entail', IMAGE, 'Two dogs play in the snow.', ...modelArgs(), '--json');
    expect(run.status).toBe(0);
    const result = JSON.parse(run.stdout) as {
      label: string;
      answer: string;
      probabilities: Record<string, number>;
      logProbs: Record<string, number>;
      promptTokens: number[];
    };
    expect(LABELS).toContain(result.label);
    expect([' yes', ' no', ' maybe']).toContain(result.answer);
    const probabilities = LABELS.map((label) => result.probabilities[label]!);
    expect(probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(Math.max(...probabilities)).toBe(result.probabilities[result.label]);
    for (const label of LABELS) expect(result.logProbs[label]).toBeLessThan(0);
    // [BOS] + bpe(' does the image describe " two dogs play in the snow. "?') + [EOS]
    expect(result.promptTokens.slice(0, 5)).toEqual([0, 473, 5, 2274, 6190]);
    expect(result.promptTokens.at(-1)).toBe(EOS_ID);
  });

  it('entail with a premise prints the label and the three probabilities, and what OFA cut of a long premise', async () => {
    const run = await mue('entail', IMAGE, 'a dog runs', '--premise', 'A dog runs on the beach. '.repeat(14), ...modelArgs());
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^(entailment|contradiction|neutral) \(no 0\.\d{3}, yes 0\.\d{3}, maybe 0\.\d{3}\)\n$/);
    expect(run.stderr).toMatch(/cpu, 32×32: encoder .* decoder .*\/token × \d+, total/);
    expect(run.stderr).toContain("mue: the premise has 84 words; only the first 80 of them are read, as in OFA's SNLI-VE evaluation (max_src_length)\n");
  });

  it('refuses a model whose vocabulary is cut (the shipped golden model) for captioning', async () => {
    const run = await mue('caption', IMAGE, '--weights', GOLDEN_MODEL, '--backend', 'cpu');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/token table has 1000 ids, but OFA's tokenizer produces ids of a 59457-entry vocabulary/);
  });

  it('exits 1 with a clear message for a missing weights directory', async () => {
    const missing = join(scratch, 'no-such-model');
    const run = await mue('caption', IMAGE, '--weights', missing, '--backend', 'cpu');
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`mue: weights ${missing}: no such file or directory\n`);
  });

  it('exits 1 naming the file for an image that cannot be decoded, before loading any model', async () => {
    const corrupt = join(scratch, 'corrupt.png');
    const png = await readFile(IMAGE);
    await writeFile(corrupt, png.subarray(0, 120));
    const run = await mue('caption', corrupt, ...modelArgs());
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^mue: .*${corrupt.replaceAll('.', '\\.')}: `, 'm'));
    expect(run.stderr).not.toContain('    at ');
    expect(run.stderr).not.toContain('loaded');
    // The image is checked first: with weights that do not exist, the image is what is reported.
    const entail = await mue('entail', corrupt, 'a cat', '--weights', join(scratch, 'no-such-model'));
    expect(entail.stderr).toMatch(/^mue: .*corrupt\.png: truncated PNG/);
  });

  it('caption --max-pixels refuses a larger image', async () => {
    const run = await mue('caption', IMAGE, ...modelArgs(), '--max-pixels', '5000');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/photo-97x61\.png: image is 97×61 \(5917 pixels\), more than the limit of 5000 pixels/);
  });

  it('preprocess writes what the model sees: Pillow’s resized bytes and the normalised input', async () => {
    const out = join(scratch, 'input.safetensors');
    const jpeg = fileURLToPath(new URL('../fixtures/preprocess-jpeg/photo-q75-422.jpg', import.meta.url));
    const run = await mue('preprocess', jpeg, '--size', '256', '--out', out);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('resized_uint8 [256, 256, 3], pixels [1, 3, 256, 256]');
    const written = await SafetensorsFile.open(out);
    const golden = await SafetensorsFile.open(fileURLToPath(new URL('../fixtures/preprocess-jpeg/expected.safetensors', import.meta.url)));
    try {
      expect(written.info('resized_uint8')).toMatchObject({ dtype: 'U8', shape: [256, 256, 3] });
      expect(written.info('pixels')).toMatchObject({ dtype: 'F32', shape: [1, 3, 256, 256] });
      const resized = await written.readBytes('resized_uint8');
      expect(Buffer.from(resized).equals(Buffer.from(await golden.readBytes('photo-q75-422.resized_uint8')))).toBe(true);
      const pixels = await written.readFloat32('pixels');
      // Channel 0 of pixel (0, 0) is the red byte normalised; channel 2 of the last pixel the last blue byte.
      expect(pixels[0]).toBeCloseTo((resized[0]! / 255 - 0.5) / 0.5, 6);
      expect(pixels[pixels.length - 1]).toBeCloseTo((resized[resized.length - 1]! / 255 - 0.5) / 0.5, 6);
    } finally {
      await written.close();
      await golden.close();
    }
  });

  it('preprocess leaves nothing behind for a file that is not an image', async () => {
    const out = join(scratch, 'not-written.safetensors');
    const run = await mue('preprocess', NOT_OFA_CHECKPOINT, '--out', out);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^mue: .*small\.pt: unrecognised format \(first bytes 50 4b 03 04/);
    expect(existsSync(out)).toBe(false);
    expect((await mue('preprocess', IMAGE, '--out', join(scratch, 'input.npy'))).stderr).toMatch(/must end in \.safetensors/);
  });

  it('exits 1 for a missing image file or a folder', async () => {
    const run = await mue('caption', join(scratch, 'missing.png'), ...modelArgs());
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/mue: image .*missing\.png: no such file or directory\n$/);
    const folder = await mue('caption', scratch, ...modelArgs());
    expect(folder.status).toBe(1);
    expect(folder.stderr).toMatch(/mue: image .*: is a directory, not a file\n$/);
  });

  it('exits 1 when the hypothesis is longer than the model reads', async () => {
    const run = await mue('entail', IMAGE, 'xq'.repeat(3000), ...modelArgs());
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(
      /mue: entailment prompt \(hypothesis\) is too long: \d+ tokens, but the model reads at most 1024 \(max_position_embeddings\)\n$/,
    );
  });

  it('refuses, before any image work, a beam whose decoder tensors exceed the largest WebGPU buffer', async (test) => {
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    const { createWebGpuBackend } = await import('../../src/backend/webgpu/index.js');
    const probe = await createWebGpuBackend();
    const limit = probe.maxTensorElements('f32');
    probe.destroy();
    // The largest beam OFA allows (vocabulary − 1) exceeds lavapipe's 4 GiB buffers, not every GPU's.
    if (59456 * OFA_VOCAB_SIZE <= limit) test.skip();
    const run = await mue('caption', IMAGE, '--backend', 'webgpu', '--beam', '59456', '--image-size', '32');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(
      /mue: caption: 59456 beams need decoder tensors of 59456 × 59457 f32 \(14\.14 GB\), more than one webgpu tensor holds \([\d.]+ GB, the device's maxBufferSize\): use a beam of at most \d+\n$/,
    );
    expect(run.stderr).not.toContain('encoder');
  });

  it('exits 1 for an option value that is not a number', async () => {
    const run = await mue('caption', IMAGE, '--beam', 'five');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^mue: option '--beam <n>' argument 'five' is invalid/);
  });
});

describe('mue (child process)', () => {
  const tsx = join(ROOT, 'node_modules', '.bin', 'tsx');
  const main = join(ROOT, 'src', 'cli', 'main.ts');

  it('prints "mue: <message>" and exits 1, with the stack only under --debug', () => {
    const args = [main, 'caption', IMAGE, '--weights', join(ROOT, 'no-such-weights'), '--backend', 'cpu'];
    const plain = spawnSync(tsx, args, { encoding: 'utf8' });
    expect(plain.status).toBe(1);
    expect(plain.stdout).toBe('');
    expect(plain.stderr).toBe(`mue: weights ${join(ROOT, 'no-such-weights')}: no such file or directory\n`);
    const debug = spawnSync(tsx, [...args, '--debug'], { encoding: 'utf8' });
    expect(debug.status).toBe(1);
    expect(debug.stderr).toMatch(/^mue: weights .*\nError: weights .*\n\s+at /);
  });
});
