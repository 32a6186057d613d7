export default {
  compilerOptions: {
    // Pages read their `app`/`id` props once at start on purpose: each page is
    // rendered inside {#key} blocks on those values, so a change remounts it.
    warningFilter: (w) => w.code !== "state_referenced_locally",
  },
};
