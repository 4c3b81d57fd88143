import { describe, expect, it } from 'vitest';
import { renderMergeFields, type MergeValues } from '../src/services/merge-fields.js';

// The merge-field renderer of saved replies: a pure function, so these run without a database.

const pat: MergeValues = {
  firstName: 'Pat',
  lastName: 'Lee',
  phone: '+19195550123',
  customFields: { plan: 'Gold', 'favorite color': 'teal', empty: '' },
};

describe('renderMergeFields', () => {
  it.each([
    ['Hi {{firstName}} {{lastName}}, we have {{phone}}.', 'Hi Pat Lee, we have +19195550123.'],
    ['Hi {{ firstName }} {{  lastName\t}}', 'Hi Pat Lee'],
    ['Your {{custom.plan}} plan', 'Your Gold plan'],
    ['Your {{ custom.plan }} plan', 'Your Gold plan'],
    ['{{custom.favorite color}}', 'teal'],
    ['[{{custom.empty}}]', '[]'],
    // A field at the start, at the end, and the whole text.
    ['{{firstName}}, welcome', 'Pat, welcome'],
    ['Welcome, {{firstName}}', 'Welcome, Pat'],
    ['{{firstName}}', 'Pat'],
    // Adjacent fields.
    ['{{firstName}}{{lastName}}', 'PatLee'],
    ['{{firstName}}{{lastName}}{{custom.plan}}', 'PatLeeGold'],
  ])('%j renders %j', (template, expected) => {
    expect(renderMergeFields(template, pat)).toBe(expected);
  });

  it('renders unknown fields blank', () => {
    expect(renderMergeFields('Hi {{nickname}}!', pat)).toBe('Hi !');
    expect(renderMergeFields('Hi {{custom.nope}}!', pat)).toBe('Hi !');
    expect(renderMergeFields('Hi {{FIRSTNAME}}!', pat)).toBe('Hi !');
    expect(renderMergeFields('{{custom.}}{{custom}}|', pat)).toBe('|');
    // Only the contact's own keys: nothing inherited from Object.prototype.
    expect(renderMergeFields('{{custom.constructor}}{{custom.toString}}{{custom.__proto__}}', pat)).toBe('');
  });

  it('renders missing values blank', () => {
    const nobody: MergeValues = { firstName: null, lastName: undefined, phone: null, customFields: null };
    expect(renderMergeFields('Hi {{firstName}} {{lastName}} ({{phone}}) {{custom.plan}}.', nobody)).toBe('Hi   () .');
    expect(renderMergeFields('Hi {{firstName}}', {})).toBe('Hi ');
    expect(renderMergeFields('Plan: {{custom.plan}}', { customFields: {} })).toBe('Plan: ');
  });

  it('renders non-string custom values as text when they are scalars, blank otherwise', () => {
    const values: MergeValues = { customFields: { visits: 3, vip: true, nested: { a: 1 }, list: ['x'], none: null } };
    expect(renderMergeFields('{{custom.visits}}|{{custom.vip}}|{{custom.nested}}|{{custom.list}}|{{custom.none}}', values)).toBe('3|true|||');
  });

  it('leaves odd braces as written', () => {
    expect(renderMergeFields('{{firstName}', pat)).toBe('{{firstName}');
    expect(renderMergeFields('{firstName}}', pat)).toBe('{firstName}}');
    expect(renderMergeFields('{firstName}', pat)).toBe('{firstName}');
    expect(renderMergeFields('{{}} and {{ }}', pat)).toBe('{{}} and {{ }}');
    expect(renderMergeFields('}}{{', pat)).toBe('}}{{');
    // The innermost pair of double braces is the field; the extra braces stay.
    expect(renderMergeFields('{{{firstName}}}', pat)).toBe('{Pat}');
    expect(renderMergeFields('{{first{{lastName}}', pat)).toBe('{{firstLee');
    expect(renderMergeFields('{{firstName}}}}', pat)).toBe('Pat}}');
  });

  it('does not expand fields inside values (one pass)', () => {
    const values: MergeValues = { firstName: '{{lastName}}', lastName: 'Lee', customFields: { a: '{{custom.b}}', b: 'B' } };
    expect(renderMergeFields('{{firstName}} {{custom.a}}', values)).toBe('{{lastName}} {{custom.b}}');
  });

  it('keeps text without fields, and other characters around fields, unchanged', () => {
    expect(renderMergeFields('', pat)).toBe('');
    expect(renderMergeFields('No fields here: {a} $1 $& \\1', pat)).toBe('No fields here: {a} $1 $& \\1');
    // Replacement patterns in values are not interpreted.
    expect(renderMergeFields('{{firstName}}', { firstName: '$& $1 $$' })).toBe('$& $1 $$');
    expect(renderMergeFields('Line 1\n{{ firstName }}\nLine 3 🎉', pat)).toBe('Line 1\nPat\nLine 3 🎉');
  });

  it('renders a long template with many unclosed braces in linear time', () => {
    const template = `{{ ${'a '.repeat(50_000)}`;
    const started = performance.now();
    expect(renderMergeFields(template, pat)).toBe(template);
    expect(performance.now() - started).toBeLessThan(500);
  });
});
