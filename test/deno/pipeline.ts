/**
 * The library API under Deno: the default model captions a shipped scene and entails a
 * hypothesis, both with MuE exits. Prints one JSON line of what test/deno/deno.test.ts compares
 * with the same calls in Node.
 */
import { OfaPipeline } from '../../src/pipeline.js';
import { DENO_REQUESTS, summarize } from './requests.js';

const ofa = await OfaPipeline.load();
const { image, hypothesis, exits, beamSize } = DENO_REQUESTS;
const caption = await ofa.caption(image, { beamSize, exits });
const entailment = await ofa.entail(image, hypothesis, { exits });
console.log(JSON.stringify(summarize(ofa, caption, entailment)));
ofa.dispose();
