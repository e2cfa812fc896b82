/**
 * Foundation demo: which backends are available here, and the same PRNG key giving the same
 * noise and the same gradient on each of them.
 *
 *   npm run demo:backends
 */
import * as tf from '@tensorflow/tfjs-core';
import { backendReport, random, useBackend } from 'blitz-ts';

tf.enableProdMode(); // keeps tfjs's "install tfjs-node" banner out of the output

async function main(): Promise<void> {
  console.log('backends:');
  const report = await backendReport();
  for (const row of report) {
    console.log(`  ${row.name.padEnd(15)} ${row.available ? 'available' : `no: ${row.reason}`}`);
  }
  const k = random.key(42);
  const [kx, kw] = random.split(k);
  console.log(
    '\nkey(42) =',
    Array.from(random.keyData(k)),
    ' split ->',
    [kx, kw].map((x) => Array.from(random.keyData(x))),
  );
  for (const row of report.filter((r) => r.available)) {
    await useBackend(row.name);
    const x = random.normal(kx, [4, 3]);
    const w = random.normal(kw, [3, 2]);
    const loss = (v: tf.Tensor): tf.Scalar => tf.sum(tf.square(tf.tanh(tf.matMul(x, v))));
    const g = tf.grad(loss)(w);
    console.log(
      `${row.name.padEnd(6)} normal(kw)[0..2] = ${Array.from(w.dataSync().slice(0, 3))
        .map((v) => v.toFixed(7))
        .join(', ')}` +
        `   d/dw sum(tanh(xw)^2)[0..2] = ${Array.from(g.dataSync().slice(0, 3))
          .map((v) => v.toFixed(6))
          .join(', ')}`,
    );
    tf.dispose([x, w, g]);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
