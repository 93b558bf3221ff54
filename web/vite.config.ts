import { defineConfig } from "vite";

// `npm run dev` proxies the API and socket.io to a running server
// (SANDSTREAM_URL, default http://127.0.0.1:3000). `npm run build` writes web/dist,
// which `sandstream up` serves at `/`. Everything is bundled: nothing is fetched from
// the internet at run time.
const target = process.env.SANDSTREAM_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2020",
    chunkSizeWarningLimit: 2000,
  },
  server: {
    proxy: {
      "/api": { target, changeOrigin: false },
      "/healthz": { target },
      "/socket.io": { target, ws: true },
    },
  },
});
