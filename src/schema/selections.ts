import { Kind, type FieldNode, type FragmentDefinitionNode, type SelectionSetNode } from 'graphql';

// Walkers over a resolver's selection set, so a list reads only the columns its query selects. They know
// GraphQL documents, not our types: each type module passes its own map of fields to columns.

export type Fragments = Record<string, FragmentDefinitionNode>;

/** Every field of a selection set, through fragments. Directives are ignored: a superset is safe. */
export function eachField(set: SelectionSetNode | undefined, fragments: Fragments, each: (field: FieldNode) => void, depth = 0): void {
  if (!set || depth > 32) return;
  for (const selection of set.selections) {
    if (selection.kind === Kind.FIELD) each(selection);
    else if (selection.kind === Kind.INLINE_FRAGMENT) eachField(selection.selectionSet, fragments, each, depth + 1);
    else eachField(fragments[selection.name.value]?.selectionSet, fragments, each, depth + 1);
  }
}

/**
 * The model fields these selection sets (of one type) read, by `columns` (the fields each GraphQL field
 * reads), or null for all of them: a field not in the map reads the whole row.
 */
export function fieldsOfSelection(
  sets: readonly (SelectionSetNode | undefined)[],
  fragments: Fragments,
  columns: Record<string, readonly string[]>,
): Set<string> | null {
  const fields = new Set<string>();
  let all = false;
  for (const set of sets) {
    eachField(set, fragments, (field) => {
      const read = columns[field.name.value];
      if (read) for (const column of read) fields.add(column);
      else all = true;
    });
  }
  return all ? null : fields;
}

/**
 * The `node` selection sets of a connection's selection (`edges { cursor node { ... } }`, `pageInfo`), or
 * null when it selects anything else (a field that needs whole rows).
 */
export function connectionNodeSelections(fieldNodes: readonly FieldNode[], fragments: Fragments): SelectionSetNode[] | null {
  let all = false;
  const nodes: SelectionSetNode[] = [];
  for (const connection of fieldNodes) {
    eachField(connection.selectionSet, fragments, (connectionField) => {
      const name = connectionField.name.value;
      if (name === 'pageInfo' || name === '__typename') return;
      if (name !== 'edges') {
        all = true;
        return;
      }
      eachField(connectionField.selectionSet, fragments, (edgeField) => {
        const edgeName = edgeField.name.value;
        if (edgeName === 'node' && edgeField.selectionSet) nodes.push(edgeField.selectionSet);
        else if (edgeName !== 'cursor' && edgeName !== '__typename') all = true;
      });
    });
  }
  return all ? null : nodes;
}
