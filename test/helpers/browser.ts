// Real headless Chromium (Debian's /usr/bin/chromium, installed by scripts/setup.sh)
// driven by playwright-core; no browser is downloaded. Each launch gets a fresh
// profile directory, removed on close. Screenshots go to test-results/.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from '../../src/shared/package.js';

export const CHROMIUM = process.env['WEIR_CHROMIUM'] ?? '/usr/bin/chromium';
export const SCREENSHOTS = join(repoRoot, 'test-results');

export const CHROMIUM_ARGS = [
	'--headless',
	'--no-sandbox',
	'--disable-gpu',
	'--disable-quic',
	'--no-first-run',
	'--disable-background-networking',
	'--disable-component-update',
	'--disable-sync',
];

export interface Browser {
	context: BrowserContext;
	page: Page;
	/** saves test-results/<name>.png and returns its path */
	screenshot(name: string): Promise<string>;
	close(): Promise<void>;
}

export async function openBrowser(o: { width?: number; height?: number } = {}): Promise<Browser> {
	const profile = mkdtempSync(join(tmpdir(), 'weir-chromium-'));
	const context = await chromium.launchPersistentContext(profile, {
		executablePath: CHROMIUM,
		headless: true,
		args: CHROMIUM_ARGS,
		viewport: { width: o.width ?? 1400, height: o.height ?? 900 },
	});
	const page = context.pages()[0] ?? (await context.newPage());
	// Nothing but the relay under test: any request elsewhere fails the page's load.
	return {
		context,
		page,
		async screenshot(name) {
			mkdirSync(SCREENSHOTS, { recursive: true });
			const path = join(SCREENSHOTS, `${name}.png`);
			await page.screenshot({ path });
			return path;
		},
		async close() {
			await context.close();
			rmSync(profile, { recursive: true, force: true });
		},
	};
}
