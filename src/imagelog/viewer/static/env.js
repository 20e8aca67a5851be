// @tanstack/virtual-core's ES module reads process.env.NODE_ENV, which a bundler would replace;
// with no build step, define it here (a classic script, run before the modules).
globalThis.process = globalThis.process || { env: { NODE_ENV: "production" } };
