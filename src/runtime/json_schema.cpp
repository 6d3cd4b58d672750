#include "runtime/json_schema.h"

#include <cstdio>
#include <map>
#include <set>
#include <vector>

#include "util/error.h"

namespace muse {
namespace {

constexpr int kMaxSchemaDepth = 64;
constexpr int64_t kMaxCount = 100000;

struct Primitive {
  const char* name;
  const char* body;
  std::vector<const char*> uses;
};

// The building blocks every schema grammar shares. Strings allow any escape JSON allows.
const std::vector<Primitive>& primitives() {
  static const std::vector<Primitive> kPrimitives = {
      {"ws", R"(| " " | "\n" [ \t]{0,20})", {}},
      {"hex", R"([0-9a-fA-F])", {}},
      {"char", R"([^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" unicode))", {"unicode"}},
      // \uXXXX, but no lone surrogate: a high one needs its low one right after.
      {"unicode",
       R"([0-9a-cA-CefEF] hex{3} | [dD] [0-7] hex{2} | [dD] [89abAB] hex{2} "\\u" [dD] [c-fC-F] hex{2})",
       {"hex"}},
      {"string", R"("\"" char* "\"")", {"char"}},
      {"integral", R"("0" | [1-9] [0-9]{0,15})", {}},
      {"integer", R"("-"? integral)", {"integral"}},
      {"number", R"("-"? integral ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?)", {"integral"}},
      {"boolean", R"("true" | "false")", {}},
      {"null", R"("null")", {}},
      {"value",
       R"(object | array | string | number | boolean | null)",
       {"object", "array", "string", "number", "boolean", "null"}},
      {"member", R"(string ws ":" ws value ws)", {"string", "ws", "value"}},
      {"object", R"("{" ws (member ("," ws member)*)? "}")", {"ws", "member"}},
      {"array", R"("[" ws (value ws ("," ws value ws)*)? "]")", {"ws", "value"}},
  };
  return kPrimitives;
}

// User text in an error message: quoted and escaped, so the message stays one line.
std::string quoted(const std::string& text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

const Primitive* find_primitive(const std::string& name) {
  for (const Primitive& p : primitives()) {
    if (name == p.name) return &p;
  }
  return nullptr;
}

// Emits the grammar rules of a schema: named rules in creation order, then the primitives they
// use.
class SchemaConverter {
 public:
  explicit SchemaConverter(const Json& document) : document_(document) {
    names_.insert("root");
    for (const Primitive& p : primitives()) names_.insert(p.name);
  }

  std::string convert(const std::string& root_expr_override = "") {
    const std::string root =
        root_expr_override.empty() ? visit(document_, "root", 0) : root_expr_override;
    std::string out = "root ::= " + root + " " + prim("ws") + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    std::vector<std::string> pending(used_.begin(), used_.end());
    std::set<std::string> done;
    while (!pending.empty()) {
      const std::string name = pending.back();
      pending.pop_back();
      if (!done.insert(name).second) continue;
      const Primitive* p = find_primitive(name);
      for (const char* dep : p->uses) pending.push_back(dep);
    }
    for (const Primitive& p : primitives()) {  // a fixed order keeps the text reproducible
      if (done.count(p.name)) out += std::string(p.name) + " ::= " + p.body + "\n";
    }
    return out;
  }

  std::string prim(const char* name) {
    used_.insert(name);
    return name;
  }

 private:
  [[noreturn]] static void unsupported(const std::string& what) {
    fail("JSON schema: ", what, " is not supported");
  }

  // A fresh rule name derived from hint, letters, digits and '-' only.
  std::string reserve(const std::string& hint) {
    std::string base;
    for (char c : hint) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      base += ok ? c : '-';
    }
    if (base.empty()) base = "rule";
    std::string name = base;
    for (int i = 2; names_.count(name); ++i) name = base + "-" + std::to_string(i);
    names_.insert(name);
    return name;
  }
  std::string add_rule(const std::string& hint, const std::string& body) {
    const std::string name = reserve(hint);
    rules_.push_back({name, body});
    return name;
  }

  const Json& resolve(const std::string& ref) {
    if (ref.empty() || ref[0] != '#')
      unsupported("$ref " + quoted(ref) + " (only local '#...' references)");
    const Json* node = &document_;
    size_t pos = 1;
    while (pos < ref.size()) {
      if (ref[pos] != '/') fail("JSON schema: bad $ref ", quoted(ref));
      const size_t end = std::min(ref.find('/', pos + 1), ref.size());
      std::string key;
      for (size_t i = pos + 1; i < end; ++i) {
        if (ref[i] == '~' && i + 1 < end && (ref[i + 1] == '0' || ref[i + 1] == '1')) {
          key += ref[++i] == '0' ? '~' : '/';
        } else {
          key += ref[i];
        }
      }
      const Json* next = nullptr;
      if (node->is_object()) {
        next = node->find(key);
      } else if (node->is_array()) {
        size_t idx = 0;
        bool digits = !key.empty();
        for (char c : key) {
          if (c < '0' || c > '9' || idx > node->size())
            digits = false;
          else
            idx = idx * 10 + size_t(c - '0');
        }
        if (digits && idx < node->size()) next = &(*node)[idx];
      }
      if (!next) fail("JSON schema: cannot resolve $ref ", quoted(ref));
      node = next;
      pos = end;
    }
    return *node;
  }

  std::string visit_ref(const std::string& ref, int depth) {
    auto it = ref_rules_.find(ref);
    if (it != ref_rules_.end()) return it->second;
    const Json& target = resolve(ref);
    const size_t slash = ref.rfind('/');
    const std::string name = reserve(slash == std::string::npos ? "ref" : ref.substr(slash + 1));
    ref_rules_[ref] = name;  // before visiting, so recursive schemas refer to the rule
    const size_t slot = rules_.size();
    rules_.push_back({name, ""});
    const std::string body = visit(target, name, depth + 1);
    rules_[slot].second = body;
    return name;
  }

  static int64_t count(const Json& schema, const char* key, int64_t fallback) {
    const Json* v = schema.find(key);
    if (!v) return fallback;
    if (!v->is_number() || v->as_number() < 0 || v->as_number() != double(int64_t(v->as_number())))
      fail("JSON schema: '", key, "' must be a non-negative integer");
    if (v->as_number() > double(kMaxCount))
      fail("JSON schema: '", key, "' above ", kMaxCount, " is not supported");
    return v->as_int();
  }
  // A GBNF repetition suffix for min..max (max < 0: unbounded).
  static std::string repetition(int64_t min, int64_t max) {
    if (max < 0) {
      return min == 0 ? "*" : min == 1 ? "+" : "{" + std::to_string(min) + ",}";
    }
    if (min == max) return "{" + std::to_string(min) + "}";
    if (min == 0 && max == 1) return "?";
    return "{" + std::to_string(min) + "," + std::to_string(max) + "}";
  }

  std::string visit(const Json& schema, const std::string& hint, int depth) {
    if (depth > kMaxSchemaDepth) fail("JSON schema nested deeper than ", kMaxSchemaDepth);
    if (schema.kind() == Json::Kind::kBool) {
      if (!schema.as_bool()) fail("JSON schema: 'false' matches nothing");
      return prim("value");
    }
    if (!schema.is_object()) fail("JSON schema: a schema must be an object or a boolean");
    for (const char* key : {"pattern", "patternProperties", "not", "if", "contains",
                            "dependentRequired", "dependentSchemas", "propertyNames",
                            "unevaluatedProperties", "unevaluatedItems", "$dynamicRef"}) {
      if (schema.find(key)) unsupported(std::string("'") + key + "'");
    }
    if (const Json* u = schema.find("uniqueItems");
        u && u->kind() == Json::Kind::kBool && u->as_bool())
      unsupported("'uniqueItems'");
    if (const Json* ref = schema.find("$ref")) {
      if (!ref->is_string()) fail("JSON schema: '$ref' must be a string");
      return visit_ref(ref->as_string(), depth);
    }
    if (const Json* c = schema.find("const")) return gbnf_literal(c->dump());
    if (const Json* e = schema.find("enum")) {
      if (!e->is_array() || e->size() == 0) fail("JSON schema: 'enum' must be a non-empty array");
      std::string alts;
      for (const Json& v : e->as_array())
        alts += (alts.empty() ? "" : " | ") + gbnf_literal(v.dump());
      return "(" + alts + ")";
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (const Json* list = schema.find(key)) {
        if (!list->is_array() || list->size() == 0)
          fail("JSON schema: '", key, "' must be a non-empty array");
        std::string alts;
        for (size_t i = 0; i < list->size(); ++i) {
          alts += (i ? " | " : "") + visit((*list)[i], hint + "-" + std::to_string(i), depth + 1);
        }
        return "(" + alts + ")";
      }
    }
    if (const Json* all = schema.find("allOf")) return visit_all_of(schema, *all, hint, depth);

    std::vector<std::string> types;
    if (const Json* t = schema.find("type")) {
      if (t->is_string()) {
        types.push_back(t->as_string());
      } else if (t->is_array() && t->size() > 0) {
        for (const Json& v : t->as_array()) types.push_back(v.as_string());
      } else {
        fail("JSON schema: 'type' must be a string or a non-empty array of strings");
      }
    } else if (schema.find("properties") || schema.find("additionalProperties") ||
               schema.find("required")) {
      types.push_back("object");
    } else if (schema.find("items") || schema.find("prefixItems")) {
      types.push_back("array");
    } else {
      return prim("value");
    }
    if (types.size() == 1) return visit_type(schema, types[0], hint, depth);
    std::string alts;
    for (const std::string& t : types)
      alts += (alts.empty() ? "" : " | ") + visit_type(schema, t, hint, depth);
    return "(" + alts + ")";
  }

  std::string visit_type(const Json& schema, const std::string& type, const std::string& hint,
                         int depth) {
    if (type == "object") return visit_object(schema, hint, depth);
    if (type == "array") return visit_array(schema, hint, depth);
    if (type == "string") {
      const int64_t min = count(schema, "minLength", 0), max = count(schema, "maxLength", -1);
      if (max >= 0 && max < min) fail("JSON schema: maxLength below minLength");
      if (max == 0) return "\"\\\"\\\"\"";
      return "\"\\\"\" " + prim("char") + repetition(min, max) + " \"\\\"\"";
    }
    if (type == "number") return prim("number");
    if (type == "integer") return prim("integer");
    if (type == "boolean") return prim("boolean");
    if (type == "null") return prim("null");
    fail("JSON schema: unknown type ", quoted(type));
  }

  // allOf of object schemas: one object with every part's properties and required keys.
  std::string visit_all_of(const Json& schema, const Json& all, const std::string& hint,
                           int depth) {
    if (!all.is_array() || all.size() == 0) fail("JSON schema: 'allOf' must be a non-empty array");
    // A lone part (pydantic wraps a $ref this way to attach a description) is that part.
    if (all.size() == 1 && !schema.find("properties") && !schema.find("required"))
      return visit(all[0], hint, depth + 1);
    Json::Object properties;
    Json::Array required;
    std::vector<std::string> order;
    auto merge = [&](const Json& part) {
      if (const Json* p = part.find("properties")) {
        for (const auto& [k, v] : p->as_object()) {
          if (!properties.count(k)) order.push_back(k);
          properties[k] = v;
        }
      }
      if (const Json* r = part.find("required")) {
        for (const Json& k : r->as_array()) required.push_back(k);
      }
      if (const Json* t = part.find("type"); t && !(t->is_string() && t->as_string() == "object"))
        unsupported("'allOf' of schemas that are not objects");
    };
    merge(schema);
    for (const Json& part : all.as_array()) {
      const Json* p = &part;
      for (int hops = 0; p->is_object() && p->find("$ref"); ++hops) {
        if (hops > kMaxSchemaDepth) fail("JSON schema: $ref chain too long");
        p = &resolve(p->at("$ref").as_string());
      }
      if (!p->is_object() || p->find("allOf") || p->find("anyOf") || p->find("oneOf"))
        unsupported("'allOf' of schemas that are not plain objects");
      merge(*p);
    }
    Json::Object merged_obj;
    // Carry the merged order explicitly: allOf parts contribute keys in their own order.
    std::vector<std::pair<std::string, Json>> ordered;
    for (const std::string& k : order) ordered.push_back({k, properties.at(k)});
    merged_obj["required"] = Json(required);
    if (const Json* ap = schema.find("additionalProperties"))
      merged_obj["additionalProperties"] = *ap;
    return object_rule(ordered, Json(merged_obj), hint, depth);
  }

  std::string visit_object(const Json& schema, const std::string& hint, int depth) {
    std::vector<std::pair<std::string, Json>> props;
    if (const Json* p = schema.find("properties")) {
      if (!p->is_object()) fail("JSON schema: 'properties' must be an object");
      for (const auto& [k, v] : p->as_object()) props.push_back({k, v});
    } else if (!schema.find("required") && !schema.find("additionalProperties")) {
      return prim("object");
    }
    return object_rule(props, schema, hint, depth);
  }

  // Properties in the given order; required ones always, optional ones maybe, then extra
  // members when additionalProperties allows them. T_i matches properties i.. after a member was
  // already written (each one preceded by a comma), H_i the same before any member.
  std::string object_rule(std::vector<std::pair<std::string, Json>> props, const Json& schema,
                          const std::string& hint, int depth) {
    std::set<std::string> required;
    if (const Json* r = schema.find("required")) {
      if (!r->is_array()) fail("JSON schema: 'required' must be an array");
      for (const Json& k : r->as_array()) {
        if (!k.is_string()) fail("JSON schema: 'required' must list strings");
        required.insert(k.as_string());
      }
    }
    for (const std::string& k : required) {
      bool listed = false;
      for (const auto& p : props) listed = listed || p.first == k;
      if (!listed) props.push_back({k, Json(true)});
    }
    std::string extra;
    const Json* ap = schema.find("additionalProperties");
    if (!ap || ap->kind() != Json::Kind::kBool || ap->as_bool()) {
      const std::string value =
          ap && ap->is_object() ? visit(*ap, hint + "-additional", depth + 1) : prim("value");
      extra = add_rule(hint + "-additional-kv",
                       prim("string") + " ws \":\" ws " + value + " " + prim("ws"));
    }
    prim("ws");
    std::vector<std::string> kv;
    for (const auto& [key, sub] : props) {
      std::string json_key;
      append_json_string(json_key, key);
      const std::string value = visit(sub, hint + "-" + key, depth + 1);
      kv.push_back(add_rule(hint + "-" + key + "-kv",
                            gbnf_literal(json_key) + " ws \":\" ws " + value + " ws"));
    }
    std::string tail = extra.empty() ? "" : add_rule(hint + "-rest", "(\",\" ws " + extra + ")*");
    std::string head =
        extra.empty() ? "" : add_rule(hint + "-rest-first", "(" + extra + " " + tail + ")?");
    for (size_t i = props.size(); i-- > 0;) {
      const bool req = required.count(props[i].first) > 0;
      const std::string t =
          req ? "\",\" ws " + kv[i] + " " + tail : "(\",\" ws " + kv[i] + ")? " + tail;
      const std::string h =
          req ? kv[i] + " " + tail : "(" + kv[i] + " " + tail + " | " + head + ")";
      const std::string idx = std::to_string(i);
      if (i > 0) tail = add_rule(hint + "-t" + idx, t);  // the first member never follows a comma
      head = add_rule(hint + "-h" + idx, h);
    }
    return "\"{\" ws " + head + " \"}\"";
  }

  std::string visit_array(const Json& schema, const std::string& hint, int depth) {
    const int64_t min = count(schema, "minItems", 0), max = count(schema, "maxItems", -1);
    if (max >= 0 && max < min) fail("JSON schema: maxItems below minItems");
    prim("ws");
    const Json* items = schema.find("items");
    const bool no_extra = items && items->kind() == Json::Kind::kBool && !items->as_bool();
    std::string item;
    if (!no_extra) item = items ? visit(*items, hint + "-item", depth + 1) : prim("value");
    std::vector<std::string> fixed;
    if (const Json* prefix = schema.find("prefixItems")) {
      if (!prefix->is_array()) fail("JSON schema: 'prefixItems' must be an array");
      for (size_t i = 0; i < prefix->size(); ++i) {
        fixed.push_back(visit((*prefix)[i], hint + "-" + std::to_string(i), depth + 1));
      }
    }
    if (!fixed.empty()) {
      // A tuple: every prefix item, then extra items when "items" allows them.
      const int64_t n = int64_t(fixed.size());
      if (max >= 0 && max < n) unsupported("'maxItems' below the number of 'prefixItems'");
      std::string body = fixed[0] + " ws";
      for (size_t i = 1; i < fixed.size(); ++i) body += " \",\" ws " + fixed[i] + " ws";
      if (!no_extra && max != n) {
        body += " (\",\" ws " + item + " ws)" +
                repetition(std::max<int64_t>(min - n, 0), max < 0 ? -1 : max - n);
      }
      return "\"[\" ws " + body + " \"]\"";
    }
    if (no_extra || max == 0) {
      if (min > 0) fail("JSON schema: minItems above zero but no items are allowed");
      return "\"[\" ws \"]\"";
    }
    std::string body = item + " ws";
    if (max != 1) {
      body += " (\",\" ws " + item + " ws)" +
              repetition(std::max<int64_t>(min - 1, 0), max < 0 ? -1 : max - 1);
    }
    return min == 0 ? "\"[\" ws (" + body + ")? \"]\"" : "\"[\" ws " + body + " \"]\"";
  }

  const Json& document_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::set<std::string> names_;
  std::set<std::string> used_;
  std::map<std::string, std::string> ref_rules_;
};

}  // namespace

std::string gbnf_literal(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02X", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

std::string json_schema_to_grammar(const Json& schema) { return SchemaConverter(schema).convert(); }

std::string json_object_grammar() {
  SchemaConverter c{Json()};
  return c.convert(c.prim("object"));
}

std::string json_value_grammar() {
  SchemaConverter c{Json()};
  return c.convert(c.prim("value"));
}

}  // namespace muse
