import { Injectable, Logger } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { WorkflowHandler } from '../interfaces/workflow.interfaces.js';
import { ON_FAILURE_METADATA } from '../workflow.constants.js';
import { readWorkflowMetadata, resolveWorkflowOptions } from './workflow-definition.js';
import { keepReplacedStepsDurable } from './step-replacements.js';
import { WorkflowRegistry } from './workflow-registry.js';

/** Collects the app's @Workflow providers into the registry, and refuses the mistakes it can see. */
@Injectable()
export class WorkflowExplorer {
  private readonly logger = new Logger('WorkflowExplorer');

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly registry: WorkflowRegistry,
  ) {}

  explore(): void {
    for (const wrapper of this.discovery.getProviders()) {
      if (wrapper.isDependencyTreeStatic()) keepReplacedStepsDurable(wrapper, this.scanner);
      const type = this.typeOf(wrapper);
      if (!type) continue;
      const meta = readWorkflowMetadata(type);
      const onFailure = this.scanner
        .getAllMethodNames(type.prototype)
        .filter((method) => Reflect.getMetadata(ON_FAILURE_METADATA, type.prototype[method]));
      if (!meta) {
        if (onFailure.length > 0) {
          throw new WorkflowConfigurationError(
            `${type.name}.${onFailure[0]} has @OnFailure() but ${type.name} has no @Workflow(): add @Workflow('name') to the class or remove @OnFailure().`,
          );
        }
        continue;
      }
      if (!wrapper.isDependencyTreeStatic()) {
        throw new WorkflowConfigurationError(
          `Workflow '${meta.name}' (${type.name}) is request-scoped (or depends on a request-scoped provider); workflows run outside any request. Make it and its dependencies singleton-scoped.`,
        );
      }
      if (onFailure.length > 1) {
        throw new WorkflowConfigurationError(`${type.name} has ${onFailure.length} @OnFailure() methods (${onFailure.join(', ')}); keep one.`);
      }
      const existing = this.registry.get(meta.name);
      if (existing) {
        if (existing.instance === wrapper.instance) continue;
        throw new WorkflowConfigurationError(
          `Two providers declare workflow '${meta.name}': ${existing.type.name} and ${type.name}. Workflow names must be unique.`,
        );
      }
      const instance = wrapper.instance as WorkflowHandler;
      if (typeof instance?.execute !== 'function') {
        throw new WorkflowConfigurationError(`${type.name} has @Workflow('${meta.name}') but no execute(ctx) method.`);
      }
      this.registry.add({ name: meta.name, type, options: resolveWorkflowOptions(meta), instance, onFailure: onFailure[0] });
    }
    this.logger.log(`Discovered ${this.registry.all().length} workflow(s): ${this.registry.all().map((w) => w.name).join(', ') || 'none'}`);
  }

  private typeOf(wrapper: InstanceWrapper): (new (...args: any[]) => any) | undefined {
    const instance = wrapper.instance as object | undefined;
    // useValue and useFactory providers have no metatype of their own: their instance's class counts.
    const type = (wrapper.metatype && !wrapper.inject ? wrapper.metatype : instance?.constructor) as
      | (new (...args: any[]) => any)
      | undefined;
    return typeof type === 'function' && type.prototype ? type : undefined;
  }
}
