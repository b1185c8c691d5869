import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { checkReport, runDemo, type DemoReport } from './demo.js';
import { onSignal, sampleRedis } from './sample-redis.js';

/**
 * `npm run sample`: boots the app (HTTP on a free port, a worker in-process), runs a handful of
 * checkouts and two catalog imports end to end, prints them, shuts down and exits 0 when every order
 * and import ended as expected. With nothing answering at REDIS_URL (default redis://127.0.0.1:6379)
 * it runs on a private redis-server. `npm run sample:serve` runs the same with the dashboard and stays up.
 */
async function main(): Promise<void> {
  const redis = await sampleRedis();
  let report: DemoReport;
  try {
    const app = await NestFactory.create(AppModule.register({ redisUrl: redis.url }), { logger: ['warn', 'error'] });
    onSignal(async () => {
      await app.close();
      await redis.stop();
    });
    await app.listen(0, '127.0.0.1');
    console.log(`Sample app on ${await app.getUrl()}, Redis ${redis.url}`);
    try {
      report = await runDemo(app);
    } finally {
      await app.close();
    }
  } finally {
    await redis.stop();
  }
  const problems = checkReport(report);
  if (problems.length > 0) {
    console.error(`Unexpected outcome:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
    return;
  }
  console.log(`Done: ${report.outcomes.filter((o) => o.status === 'succeeded').length} orders succeeded, the declined one failed and was compensated.`);
  const children = report.imports.reduce((sum, i) => sum + i.children.length, 0);
  console.log(`Imports: ${report.imports.length} fanned out to ${children} child runs; the one hit by the supplier outage succeeded after retryRun.`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
