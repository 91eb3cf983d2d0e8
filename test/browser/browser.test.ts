/**
 * The engine in real headless browsers (browsers.ts): the library bundle and the demo page as
 * `npm run demo` serves them (web/), and the kernel smoke test in a page. The demo's results
 * must equal the same calls in Node (lavapipe through Dawn): different WebGPU implementations,
 * adapters and shader compilers, the same tokens. Screenshots of the exit report are written to
 * test/artifacts/ (CI keeps them).
 */
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptionResult, type EntailmentResult, type ExitSettings, OfaPipeline } from '../../src/pipeline.js';
import { bundleForPage, buildWeb } from '../../web/build.js';
import { type DemoServer, serveDemo } from '../../web/serve.js';
import { SMOKE_TOLERANCE, type SmokeResult } from '../helpers/kernel-smoke.js';
import { type BrowserSetup, CHROMIUM, CHROMIUM_COMPATIBILITY, FIREFOX, launch } from './browsers.js';

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
/** The demo's first scene, selected when the page opens, and its sliders' starting thresholds. */
const SCENE = 'data/shapes-eval/0000.png';
const HYPOTHESIS = 'there is a blue square';
const PAGE_EXITS: ExitSettings = { image: 0.85, text: 0.85, decoder: 0.86 };
/** A demo request runs the model twice on a software adapter (SwiftShader: ~30 s a caption). */
const DEMO_TIMEOUT_MS = 400_000;

let server: DemoServer;
/** The kernel smoke test as one module for a page's script tag. */
let smokeScript: string;
/** The same requests in Node, for comparison. */
let node: OfaPipeline;

beforeAll(async () => {
  await buildWeb();
  server = await serveDemo({ port: 0, also: ['/test/browser/'] });
  smokeScript = await bundleForPage(fileURLToPath(new URL('smoke-page.ts', import.meta.url)));
  node = await OfaPipeline.load();
  await mkdir(ARTIFACTS, { recursive: true });
});

afterAll(async () => {
  node?.dispose();
  await server?.close();
});

/** One browser for a describe block: launched before its tests, closed after them. */
function useBrowser(setup: BrowserSetup): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await launch(setup);
  });
  afterAll(async () => {
    await browser?.close();
  });
  return () => browser!;
}

/** Opens `path` (under the server's root) in a new page, runs `fn`, closes the page. */
async function inPage<T>(browser: Browser, setup: BrowserSetup, path: string, fn: (page: Page) => Promise<T>): Promise<T> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  try {
    await page.setViewport({ width: 1360, height: 1000 });
    await page.goto(new URL(path, server.url).href);
    return await fn(page);
  } catch (error) {
    throw new Error(`${setup.name}: ${(error as Error).message}${errors.length ? ` (page errors: ${errors.join('; ')})` : ''}`, { cause: error });
  } finally {
    await page.close();
  }
}

/** Every kernel family on the page's WebGPU against the CPU backend in the same page. */
async function expectSmokePasses(browser: Browser, setup: BrowserSetup): Promise<void> {
  const report = await inPage(browser, setup, `/test/browser/smoke.html${setup.query}`, async (page) => {
    await page.addScriptTag({ content: smokeScript, type: 'module' });
    await page.waitForFunction(() => window.smoke !== undefined);
    return page.evaluate(() => window.smoke);
  });
  expect(report.results.length).toBeGreaterThanOrEqual(13);
  for (const { op, maxAbsDiff } of report.results as SmokeResult[]) expect(maxAbsDiff, `${op} on ${report.adapter}`).toBeLessThan(SMOKE_TOLERANCE);
}

/** Runs the page's request (the task already chosen) and returns what it recorded. */
async function runDemo(page: Page): Promise<{ full: CaptionResult | EntailmentResult; early: CaptionResult | EntailmentResult }> {
  await page.evaluate(() => window.mueDemo.ready);
  await page.click('#run');
  await page.waitForSelector('#results[data-state=done], #results[data-state=error]', { timeout: 400_000 });
  const { last, error } = await page.evaluate(() => ({ last: window.mueDemo.last, error: window.mueDemo.error }));
  if (!last) throw new Error(`the page reported no result: ${error}`);
  return last;
}

/** Layers run per stream and sample, encoder then decoder. */
const layersRun = (result: CaptionResult | EntailmentResult): number[][] =>
  [...result.exitReport!.encoder, ...result.exitReport!.decoder].map((stream) => stream.layersRun);

describe(FIREFOX.name, () => {
  const browser = useBrowser(FIREFOX);

  it('runs every kernel family on the page’s WebGPU and matches the CPU backend', () => expectSmokePasses(browser(), FIREFOX));

  it('the demo page captions a shipped scene with the tokens and exits Node gives, and draws the exit report', async () => {
    const { full, early } = await inPage(browser(), FIREFOX, '', async (page) => {
      await page.select('#beam', '1');
      const result = (await runDemo(page)) as { full: CaptionResult; early: CaptionResult };
      await page.screenshot({ path: `${ARTIFACTS}exit-report-firefox.png`, fullPage: true });
      // One row per encoder stream and decoded token, each with its similarity trace.
      const traces = await page.$$eval('#report-rows tr:not(.section):not(.note)', (rows) => rows.map((row) => row.querySelectorAll('polyline').length));
      expect(traces).toEqual(Array.from({ length: 2 + result.early.tokens.length }, () => 1));
      return result;
    });
    const nodeFull = await node.caption(SCENE, { beamSize: 1, exits: false });
    const nodeEarly = await node.caption(SCENE, { beamSize: 1, exits: PAGE_EXITS });
    expect(full.tokens).toEqual(nodeFull.tokens);
    expect(early.tokens).toEqual(nodeEarly.tokens);
    expect(layersRun(early)).toEqual(layersRun(nodeEarly));
    expect(early.exitReport!.computeSaved).toBeGreaterThan(0.05);
  }, DEMO_TIMEOUT_MS);
});

describe(CHROMIUM.name, () => {
  const browser = useBrowser(CHROMIUM);

  it('runs every kernel family on the page’s WebGPU and matches the CPU backend', () => expectSmokePasses(browser(), CHROMIUM));

  it('the demo page tests a hypothesis with the answer and exits Node gives', async () => {
    const { early } = await inPage(browser(), CHROMIUM, '', async (page) => {
      await page.click('[data-task=entail]');
      expect(await page.$eval('#hypothesis', (input) => (input as HTMLInputElement).value)).toBe(HYPOTHESIS);
      const result = await runDemo(page);
      await page.screenshot({ path: `${ARTIFACTS}exit-report-chromium.png`, fullPage: true });
      return result as { early: EntailmentResult };
    });
    const nodeEarly = await node.entail(SCENE, HYPOTHESIS, { exits: PAGE_EXITS });
    expect(early.label).toBe(nodeEarly.label);
    for (const [label, p] of Object.entries(nodeEarly.probabilities)) {
      expect(early.probabilities[label as keyof typeof early.probabilities], label).toBeCloseTo(p, 4);
    }
    expect(layersRun(early)).toEqual(layersRun(nodeEarly));
  }, DEMO_TIMEOUT_MS);
});

describe(CHROMIUM_COMPATIBILITY.name, () => {
  const browser = useBrowser(CHROMIUM_COMPATIBILITY);

  it('runs every kernel family on a compatibility-mode adapter and matches the CPU backend', () => expectSmokePasses(browser(), CHROMIUM_COMPATIBILITY));
});
