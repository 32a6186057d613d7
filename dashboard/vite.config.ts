import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// Served by the binary at /_/ from dashboard/dist (committed: a fresh clone needs no
// Node.js). Hashed names under assets/ get a year-long immutable cache.
export default defineConfig({
  base: "/_/",
  plugins: [svelte()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 900,
  },
  server: {
    // `npm run dev` against a local `picloud dev` on :8080.
    proxy: { "/api": "http://127.0.0.1:8080", "/apps": "http://127.0.0.1:8080" },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
