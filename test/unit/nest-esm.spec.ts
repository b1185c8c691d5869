import 'reflect-metadata';
import { describe, expect, it } from '@jest/globals';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';

@Injectable()
class Clock {
  now(): number {
    return 42;
  }
}

// No @Inject(): resolution relies on design:paramtypes (emitDecoratorMetadata).
@Injectable()
class Greeter {
  constructor(private readonly clock: Clock) {}
  greet(): string {
    return `hello@${this.clock.now()}`;
  }
}

@Module({ providers: [Clock, Greeter], exports: [Greeter] })
class GreeterModule {}

describe('Nest 12 under ts-jest ESM', () => {
  it('emits decorator metadata under transpile-only ts-jest', () => {
    expect(Reflect.getMetadata('design:paramtypes', Greeter)).toEqual([Clock]);
  });

  it('injects constructor dependencies in a testing module', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [GreeterModule] }).compile();
    try {
      expect(moduleRef.get(Greeter).greet()).toBe('hello@42');
    } finally {
      await moduleRef.close();
    }
  });

  it('boots an application context with NestFactory', async () => {
    const app = await NestFactory.createApplicationContext(GreeterModule, { logger: false });
    try {
      expect(app.get(Greeter).greet()).toBe('hello@42');
    } finally {
      await app.close();
    }
  });
});
