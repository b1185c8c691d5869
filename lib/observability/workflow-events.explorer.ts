import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { ON_WORKFLOW_EVENT_METADATA, type OnWorkflowEventMetadata } from './on-workflow-event.decorator.js';
import { WorkflowEvents } from './workflow-events.js';

/** Subscribes the @OnWorkflowEvent methods of the app's singleton providers, and unsubscribes on shutdown. */
@Injectable()
export class WorkflowEventsExplorer implements OnModuleInit, OnApplicationShutdown {
  private readonly unsubscribers: (() => void)[] = [];

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly events: WorkflowEvents,
  ) {}

  onModuleInit(): void {
    for (const wrapper of this.discovery.getProviders()) {
      const instance = wrapper.instance as Record<string, unknown> | undefined;
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      const prototype = Object.getPrototypeOf(instance) as object | null;
      if (!prototype) continue;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const handler = instance[method];
        if (typeof handler !== 'function') continue;
        const meta = Reflect.getMetadata(ON_WORKFLOW_EVENT_METADATA, handler) as OnWorkflowEventMetadata | undefined;
        if (!meta) continue;
        this.unsubscribers.push(this.events.on(meta.events, (payload) => handler.call(instance, payload), meta.filter));
      }
    }
  }

  onApplicationShutdown(): void {
    for (const unsubscribe of this.unsubscribers.splice(0)) unsubscribe();
  }
}
