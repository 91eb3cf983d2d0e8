import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  OFA_PRESETS,
  attentionScale,
  configFromJson,
  validateConfig,
} from '../../../src/models/ofa/config.js';

const manifest = JSON.parse(
  readFileSync(new URL('../../fixtures/ofa-tiny-random/manifest.json', import.meta.url), 'utf8'),
) as { config: Record<string, unknown> };

describe('OFA config (ofa-arch.md §1)', () => {
  it('reads the golden manifest config: OFA-tiny with the vocabulary cut to 1000', () => {
    expect(configFromJson(manifest.config)).toEqual({ ...OFA_PRESETS.tiny, vocabSize: 1000 });
  });

  it('has the released sizes, with s = (2·dh)^−0.5', () => {
    expect(OFA_PRESETS.base).toMatchObject({ dModel: 768, encoderLayers: 6, encoderAttentionHeads: 12 });
    expect(OFA_PRESETS.base.resnetType).toBe('resnet101');
    expect(OFA_PRESETS.huge).toMatchObject({ dModel: 1280, encoderLayers: 24, decoderLayers: 12 });
    expect(OFA_PRESETS.huge.resnetType).toBe('resnet152');
    expect(attentionScale(OFA_PRESETS.large, 16)).toBeCloseTo(0.0883883, 6);
    expect(attentionScale(OFA_PRESETS.huge, 16)).toBeCloseTo(0.0790569, 6);
    for (const preset of Object.values(OFA_PRESETS)) validateConfig(preset);
  });

  it('names a missing or invalid size', () => {
    const { d_model: _dropped, ...withoutWidth } = manifest.config;
    expect(() => configFromJson(withoutWidth)).toThrow(
      'config.json: "d_model" must be a positive integer, found nothing',
    );
    expect(() => configFromJson({ ...manifest.config, resnet_type: 'resnet18' }, 'x.json')).toThrow(
      'x.json: "resnet_type" must be one of resnet50, resnet101, resnet152, found "resnet18"',
    );
    expect(() => configFromJson({ ...manifest.config, decoder_attention_heads: 3 })).toThrow(
      'd_model 256 is not divisible into 3 decoder attention heads',
    );
  });

  it('refuses variants the engine does not implement', () => {
    expect(() => configFromJson({ ...manifest.config, normformer: false })).toThrow('"normformer" must be true');
    expect(() => configFromJson({ ...manifest.config, activation_function: 'relu' })).toThrow(
      '"activation_function" must be "gelu"',
    );
  });
});
