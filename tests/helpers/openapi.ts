import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

// ajv-formats is CommonJS; under NodeNext its default export arrives wrapped.
const addFormats = ((addFormatsModule as any).default ?? addFormatsModule) as typeof import('ajv-formats').default;

const DOC_ID = 'https://gateway.test/openapi.json';

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/**
 * Validates responses against the OpenAPI document the server publishes: the response schema for
 * (path template, method, status) with the document's own JSON Schema 2020-12 components.
 */
export function openApiValidator(doc: any) {
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  addFormats(ajv);
  // The document's top-level OpenAPI fields are not JSON Schema keywords: known to ajv, never validated.
  ajv.addVocabulary(['openapi', 'info', 'servers', 'security', 'tags', 'paths', 'components']);
  ajv.addSchema(doc, DOC_ID);
  const cache = new Map<string, ValidateFunction>();

  return {
    /** The documented statuses of an operation. */
    statuses(path: string, method: string): string[] {
      return Object.keys(doc.paths[path]?.[method.toLowerCase()]?.responses ?? {});
    },
    /** For answers off the route table (404, 405): the document's Error schema. */
    assertError(body: unknown) {
      let validate = cache.get('Error');
      if (!validate) {
        validate = ajv.compile({ $ref: `${DOC_ID}#/components/schemas/Error` });
        cache.set('Error', validate);
      }
      if (!validate(body)) throw new Error(`Not an Error body: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`);
    },
    /** Throws with ajv's errors unless `body` matches the documented response. */
    assert(path: string, method: string, status: number, body: unknown) {
      const key = `${method} ${path} ${status}`;
      let validate = cache.get(key);
      if (!validate) {
        const operation = doc.paths[path]?.[method.toLowerCase()];
        if (!operation) throw new Error(`The OpenAPI document has no ${method} ${path}.`);
        if (!operation.responses[String(status)]) {
          throw new Error(`The OpenAPI document has no ${status} response for ${method} ${path}.`);
        }
        const ref = `${DOC_ID}#/${pointer('paths', path, method.toLowerCase(), 'responses', String(status), 'content', 'application/json', 'schema')}`;
        validate = ajv.compile({ $ref: ref });
        cache.set(key, validate);
      }
      if (!validate(body)) {
        throw new Error(
          `${key} does not match the OpenAPI document: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`,
        );
      }
    },
  };
}

export type OpenApiValidator = ReturnType<typeof openApiValidator>;
