import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { runDemo } from './demo.js';
import { onSignal, sampleRedis } from './sample-redis.js';

/**
 * `npm run sample:serve`: the sample app with the workflow dashboard mounted at /workflows. It runs the
 * demo once (checkouts, among them a declined one that is compensated, and the import fan-out, one import
 * left failed by a supplier outage: retry it from the dashboard), then keeps serving until Ctrl-C.
 * PORT (default 3000) and REDIS_URL choose where it listens and which Redis it uses (a private
 * redis-server, stopped with the app, when nothing answers at REDIS_URL).
 */
async function main(): Promise<void> {
  const redis = await sampleRedis();
  const app = await NestFactory.create(AppModule.register({ redisUrl: redis.url, dashboard: { path: '/workflows' } }), { logger: ['warn', 'error'] }).catch(
    async (error: unknown) => {
      await redis.stop();
      throw error;
    },
  );
  onSignal(async () => {
    await app.close();
    await redis.stop();
  });
  await app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  console.log(`Sample app on ${url}, Redis ${redis.url}; running the demo…`);
  await runDemo(app, () => undefined, { retryFailedImport: false });
  console.log(`Dashboard: ${url}/workflows  (Ctrl-C to stop)`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
