/**
 * WGSL sources (one `.wgsl` file per kernel family in `kernels/`) and compiled pipelines.
 *
 * A kernel file is completed by a small header written here: `enable` directives and type
 * aliases (WGSL cannot parameterize types with override constants, e.g. an f16 or f32 weight
 * operand). Numeric parameters such as tile sizes are WGSL `override` constants. WGSL shared by
 * several kernel families lives in one file that a variant `include`s, placed between the header
 * and the kernel's own source: functions (`gelu` in `activation.wgsl`), or a core that the kernel
 * file completes (`gemm.wgsl`, whose operand loaders `matmul.wgsl` and `conv2d.wgsl` define).
 * `gate.wgsl` (the gate of `unlessAll`, which every entry point checks first) precedes them all.
 * Each distinct (file, entry point, header, includes, constants) compiles once per device.
 */
import { KERNEL_FILES_DIR } from '../../assets.js';
import { childOf, locationLabel, readText } from '../../io/location.js';
import { BUNDLED_KERNEL_SOURCES } from './bundled-kernels.js';

export const KERNEL_FILES = [
  'gate',
  'activation',
  'gemm',
  'gemm-registers',
  'gemm-registers-shuffle',
  'gemm-registers-uniform',
  'reduce-subgroups',
  'reduce-workgroup-memory',
  'elementwise',
  'matmul',
  'layernorm',
  'softmax',
  'reduce',
  'indexing',
  'relative-bias',
  'conv2d',
  'winograd',
  'pool',
  'attention',
  'attention-operands',
  'attention-softmax',
  'exit',
  'select',
] as const;

export type KernelFile = (typeof KERNEL_FILES)[number];

export type KernelSources = ReadonlyMap<KernelFile, string>;

/**
 * Every kernel file's source: inlined by the browser bundle, else read from `baseUrl` (default:
 * the package's `kernels/`) from disk in Node and Deno, with fetch from a server.
 */
export async function loadKernelSources(baseUrl?: URL): Promise<KernelSources> {
  const bundled = baseUrl === undefined ? BUNDLED_KERNEL_SOURCES : undefined;
  const entries = await Promise.all(
    KERNEL_FILES.map(async (name) => {
      if (bundled) {
        const source = bundled[name];
        if (source === undefined) throw new Error(`the bundled WGSL kernels lack ${name}.wgsl (rebuild the bundle)`);
        return [name, source] as const;
      }
      const location = childOf(baseUrl ?? KERNEL_FILES_DIR, `${name}.wgsl`);
      try {
        return [name, await readText(location)] as const;
      } catch (cause) {
        throw new Error(`cannot load WGSL kernel ${locationLabel(location)}`, { cause });
      }
    }),
  );
  return new Map(entries);
}

export interface KernelVariant {
  file: KernelFile;
  entryPoint: string;
  /** WGSL extensions to enable, e.g. `f16`, `subgroups`. */
  enable?: readonly string[];
  /** Type aliases the file expects, e.g. `{ WeightType: 'f16' }`. */
  aliases?: Readonly<Record<string, string>>;
  /** Values of the file's `override` constants. */
  constants?: Readonly<Record<string, number>>;
  /** Shared files placed before the kernel's own, in order, e.g. `['activation', 'gemm']`. */
  include?: readonly KernelFile[];
}

/**
 * The directives and aliases before a variant's files. `subgroupsDirective: false` leaves out
 * `enable subgroups;`, for a compiler that has shuffles but refuses the directive (naga; see
 * `DeviceCapabilities.subgroupShuffle`).
 */
function header(variant: KernelVariant, subgroupsDirective: boolean): string {
  const enable = (variant.enable ?? []).filter((e) => subgroupsDirective || e !== 'subgroups');
  const lines = enable.map((e) => `enable ${e};`);
  for (const [name, type] of Object.entries(variant.aliases ?? {})) lines.push(`alias ${name} = ${type};`);
  return lines.join('\n');
}

/** A variant's identity, built without the header's text or JSON: it is looked up for every dispatch. */
function variantKey(v: KernelVariant): string {
  let key = `${v.file}:${v.entryPoint}:${v.enable?.join() ?? ''}:${v.include?.join() ?? ''}`;
  for (const name in v.aliases) key += `:${name}=${v.aliases[name]}`;
  for (const name in v.constants) key += `:${name}=${v.constants[name]}`;
  return key;
}

export class PipelineCache {
  readonly #pipelines = new Map<string, GPUComputePipeline>();
  readonly #modules = new Map<string, GPUShaderModule>();

  constructor(
    private readonly device: GPUDevice,
    private readonly sources: KernelSources,
    /** See `DeviceCapabilities.subgroupsDirective`. */
    private readonly subgroupsDirective = true,
  ) {}

  get(variant: KernelVariant): GPUComputePipeline {
    const key = variantKey(variant);
    let pipeline = this.#pipelines.get(key);
    if (pipeline) return pipeline;
    const head = header(variant, this.subgroupsDirective);
    const include = variant.include ?? [];
    const moduleKey = `${variant.file}\n${head}\n${include.join()}`;
    let module = this.#modules.get(moduleKey);
    if (!module) {
      const code = [head, ...['gate' as const, ...include].map((file) => this.sources.get(file)), this.sources.get(variant.file)].join('\n');
      module = this.device.createShaderModule({ label: variant.file, code });
      this.#modules.set(moduleKey, module);
    }
    pipeline = this.device.createComputePipeline({
      label: `${variant.file}.${variant.entryPoint}`,
      layout: 'auto',
      compute: { module, entryPoint: variant.entryPoint, constants: variant.constants ?? {} },
    });
    this.#pipelines.set(key, pipeline);
    return pipeline;
  }
}
