import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { checkReport, runDemo, type DemoReport } from './demo.js';

/**
 * `npm run sample`: boots the app (HTTP on a free port, a worker in-process), runs a handful of
 * checkouts end to end, prints them, shuts down and exits 0 when every order ended as expected.
 */
async function main(): Promise<void> {
  const app = await NestFactory.create(AppModule.register(), { logger: ['warn', 'error'] });
  app.enableShutdownHooks();
  await app.listen(0, '127.0.0.1');
  console.log(`Sample app on ${await app.getUrl()}, Redis ${process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'}`);
  let report: DemoReport;
  try {
    report = await runDemo(app);
  } finally {
    await app.close();
  }
  const problems = checkReport(report);
  if (problems.length > 0) {
    console.error(`Unexpected outcome:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
    return;
  }
  console.log(`Done: ${report.outcomes.filter((o) => o.status === 'succeeded').length} orders succeeded, the declined one failed and was compensated.`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
