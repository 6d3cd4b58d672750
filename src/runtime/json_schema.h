// JSON schema -> GBNF grammar (see runtime/grammar.h), for structured output and tool calls.
//
// Supported: type (one or a list) object (properties, required, additionalProperties
// false/true/schema; properties appear in the schema's order, each optional one may be left out),
// array (items, prefixItems, minItems, maxItems), string (minLength, maxLength), number, integer,
// boolean, null; enum, const, anyOf, oneOf, allOf of object schemas (merged), $ref to any JSON
// pointer in the document ("#/$defs/X", "#/definitions/X", "#"), recursion through $ref.
// Annotations (title, description, format, default, examples, ...) are ignored. "pattern" and
// other keywords the grammar cannot express exactly are refused with a one-line muse::Error;
// numeric bounds (minimum, maximum, multipleOf) are not enforced.
//
// Whitespace between tokens is limited (one space, or a newline and up to 20 spaces or tabs) and
// numbers have at most 16 digits before and after the point, so that a constrained model cannot
// wander off into endless padding.
#pragma once
#include <string>

#include "util/json.h"

namespace muse {

// GBNF text with a `root` rule matching JSON texts that satisfy the schema.
std::string json_schema_to_grammar(const Json& schema);

// GBNF for any JSON object: OpenAI's response_format {"type": "json_object"}.
std::string json_object_grammar();

// GBNF for any JSON value.
std::string json_value_grammar();

// `text` as a GBNF string literal, quotes included.
std::string gbnf_literal(std::string_view text);

}  // namespace muse
