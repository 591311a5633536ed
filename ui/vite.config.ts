// Weir's web UI, bundled at build time into ui/dist (served by weir-controller): no
// CDN, nothing fetched at run time but the relay's API on the same origin. Relative
// asset paths, so the UI works under any prefix (kubectl port-forward, the API
// server's service proxy, `weir ui`).
import { defineConfig } from 'vite';

export default defineConfig({
	base: './',
	oxc: { jsx: { runtime: 'automatic', importSource: 'react' } },
	build: {
		outDir: 'dist',
		emptyOutDir: true,
		sourcemap: false,
		chunkSizeWarningLimit: 1024,
	},
	server: {
		// `npm run dev` in ui/: the relay's API from a relay on this machine
		proxy: { '/v1': process.env['WEIR_RELAY'] ?? 'http://127.0.0.1:4245' },
	},
});
