import { Injectable, type Type } from '@nestjs/common';
import type { WorkflowDefinition } from './workflow-definition.js';

/** The workflows this app has as providers, by name and by class. */
@Injectable()
export class WorkflowRegistry {
  private readonly byName = new Map<string, WorkflowDefinition>();
  private readonly byType = new Map<Type, WorkflowDefinition>();

  add(definition: WorkflowDefinition): void {
    this.byName.set(definition.name, definition);
    this.byType.set(definition.type, definition);
  }

  get(name: string): WorkflowDefinition | undefined {
    return this.byName.get(name);
  }

  getByType(type: Type): WorkflowDefinition | undefined {
    return this.byType.get(type);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** How many workflows are registered (caches built from all() compare it). */
  get size(): number {
    return this.byName.size;
  }

  all(): WorkflowDefinition[] {
    return [...this.byName.values()];
  }
}
