/**
 * The browsers the tests drive: Debian's Chromium and Firefox ESR, through puppeteer-core with the
 * system executables (nothing is downloaded; scripts/setup.sh installs both from Debian).
 *
 * WebGPU headless on a machine without a GPU, as measured on Debian bookworm:
 * - Chromium with `--enable-unsafe-webgpu` offers SwiftShader (subgroups, no shader-f16) as its
 *   core adapter; with `--use-angle=vulkan --use-webgpu-adapter=opengles` a compatibility-mode
 *   adapter reaches lavapipe through ANGLE's OpenGL ES.
 * - Firefox ESR with `dom.webgpu.enabled` and `gfx.webgpu.ignore-blocklist` offers lavapipe as a
 *   core fallback adapter (shader-f16, no subgroups).
 * Chromium runs as root only with `--no-sandbox`; the networking flags keep it from calling home
 * (the machine has no network, and the refused connections slow every start).
 */
import { existsSync } from 'node:fs';
import puppeteer, { type Browser, type LaunchOptions } from 'puppeteer-core';

export interface BrowserSetup {
  name: string;
  executable: string;
  launch: LaunchOptions;
  /** Query string for pages that create a WebGPU backend (`?adapter=compatibility`). */
  query: string;
}

const CHROMIUM_FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];

export const CHROMIUM: BrowserSetup = {
  name: 'Chromium (SwiftShader)',
  executable: '/usr/bin/chromium',
  launch: { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_FLAGS },
  query: '',
};

export const CHROMIUM_COMPATIBILITY: BrowserSetup = {
  name: 'Chromium (compatibility mode, lavapipe through ANGLE)',
  executable: '/usr/bin/chromium',
  launch: { executablePath: '/usr/bin/chromium', headless: true, args: [...CHROMIUM_FLAGS, '--use-angle=vulkan', '--use-webgpu-adapter=opengles'] },
  query: '?adapter=compatibility',
};

export const FIREFOX: BrowserSetup = {
  name: 'Firefox ESR (lavapipe)',
  executable: '/usr/bin/firefox-esr',
  launch: {
    browser: 'firefox',
    executablePath: '/usr/bin/firefox-esr',
    headless: true,
    extraPrefsFirefox: { 'dom.webgpu.enabled': true, 'gfx.webgpu.ignore-blocklist': true },
  },
  query: '',
};

/** Starts the browser, or fails saying how to install it. */
export async function launch(setup: BrowserSetup): Promise<Browser> {
  if (!existsSync(setup.executable)) {
    throw new Error(`${setup.name}: ${setup.executable} is missing; scripts/setup.sh installs it (apt-get install chromium firefox-esr)`);
  }
  return puppeteer.launch({ ...setup.launch, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
}
