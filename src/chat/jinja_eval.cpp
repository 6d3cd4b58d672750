// Evaluation of the syntax tree with Jinja2's runtime semantics: scoping (for bodies and macros
// open scopes; if does not), Undefined, Python arithmetic and comparisons, macros and loops.
#include <chrono>
#include <cmath>
#include <ctime>

#include "chat/jinja_internal.h"
#include "chat/jinja_text.h"

namespace muse::jinja {

// ---------------------------------------------------------------------------------------------
// Arithmetic

namespace {

[[noreturn]] void undefined_error(const Value& v) { throw TemplateError(v.undefined_message()); }

const char* op_symbol(BinOp op) {
  switch (op) {
    case BinOp::kAdd:
      return "+";
    case BinOp::kSub:
      return "-";
    case BinOp::kMul:
      return "*";
    case BinOp::kDiv:
      return "/";
    case BinOp::kFloorDiv:
      return "//";
    case BinOp::kMod:
      return "%";
    case BinOp::kPow:
      return "** or pow()";
  }
  return "?";
}

[[noreturn]] void unsupported(BinOp op, const Value& a, const Value& b) {
  type_error("unsupported operand type(s) for ", op_symbol(op), ": '", a.type_name(), "' and '",
             b.type_name(), "'");
}

[[noreturn]] void overflow() { type_error("integer overflow (Python would use a big integer)"); }

Value repeat(const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_str();
    if (!s.empty() && uint64_t(n) > size_limits().max_string_bytes / s.size())
      type_error("string too long (repetition)");
    std::string out;
    out.reserve(s.size() * size_t(n));
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value::str(std::move(out), seq.is_markup());
  }
  const auto& items = seq.items();
  if (!items.empty() && uint64_t(n) > size_limits().max_list_items / items.size())
    type_error("list too long (repetition)");
  std::vector<Value> out;
  out.reserve(items.size() * size_t(n));
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

// Python's float floor division and modulo (the result of % has the divisor's sign).
void float_divmod(double x, double y, double* floordiv, double* mod) {
  double m = std::fmod(x, y);
  double div = (x - m) / y;
  if (m != 0) {
    if ((y < 0) != (m < 0)) {
      m += y;
      div -= 1.0;
    }
  } else {
    m = std::copysign(0.0, y);
  }
  double fd;
  if (div != 0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, x / y);
  }
  *floordiv = fd;
  *mod = m;
}

Value int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1)
      if (__builtin_mul_overflow(result, base, &result)) overflow();
    exp >>= 1;
    if (exp && __builtin_mul_overflow(base, base, &base)) overflow();
  }
  return Value::integer(result);
}

}  // namespace

Value binary_op(Interp& in, BinOp op, const Value& a, const Value& b) {
  if (a.is_undefined()) undefined_error(a);
  // str % x formats before x is looked at, so an Undefined x prints as "".
  if (op == BinOp::kMod && a.is_string())
    return Value::str(percent_format(in, a.as_str(), b), a.is_markup());
  if (b.is_undefined()) undefined_error(b);
  if (a.is_number() && b.is_number()) {
    const bool ints = a.is_integral() && b.is_integral();
    const int64_t x = ints ? a.as_int() : 0, y = ints ? b.as_int() : 0;
    const double fx = a.as_double(), fy = b.as_double();
    int64_t r;
    switch (op) {
      case BinOp::kAdd:
        if (!ints) return Value::number(fx + fy);
        if (__builtin_add_overflow(x, y, &r)) overflow();
        return Value::integer(r);
      case BinOp::kSub:
        if (!ints) return Value::number(fx - fy);
        if (__builtin_sub_overflow(x, y, &r)) overflow();
        return Value::integer(r);
      case BinOp::kMul:
        if (!ints) return Value::number(fx * fy);
        if (__builtin_mul_overflow(x, y, &r)) overflow();
        return Value::integer(r);
      case BinOp::kDiv:
        if (fy == 0) type_error(ints ? "division by zero" : "float division by zero");
        return Value::number(fx / fy);
      case BinOp::kFloorDiv:
      case BinOp::kMod: {
        if (ints) {
          if (y == 0) type_error("integer division or modulo by zero");
          if (x == INT64_MIN && y == -1) {
            if (op == BinOp::kMod) return Value::integer(0);
            overflow();
          }
          int64_t q = x / y, m = x % y;
          if (m != 0 && ((m < 0) != (y < 0))) {
            m += y;
            q -= 1;
          }
          return Value::integer(op == BinOp::kMod ? m : q);
        }
        if (fy == 0)
          type_error(op == BinOp::kMod ? "float modulo" : "float floor division by zero");
        double fd, m;
        float_divmod(fx, fy, &fd, &m);
        return Value::number(op == BinOp::kMod ? m : fd);
      }
      case BinOp::kPow:
        if (ints && y >= 0) return int_pow(x, y);
        if (fx == 0 && fy < 0) type_error("0.0 cannot be raised to a negative power");
        if (fx < 0 && fy != std::floor(fy)) type_error("complex results are not supported");
        return Value::number(std::pow(fx, fy));
    }
  }
  switch (op) {
    case BinOp::kAdd:
      if (a.is_string() && b.is_string()) {
        if (a.is_markup() || b.is_markup()) {
          // Markup escapes the plain side, as markupsafe does.
          const std::string l = a.is_markup() ? a.as_str() : text::html_escape(a.as_str());
          const std::string r = b.is_markup() ? b.as_str() : text::html_escape(b.as_str());
          return Value::str(l + r, true);
        }
        std::string out;
        out.reserve(a.as_str().size() + b.as_str().size());
        out += a.as_str();
        out += b.as_str();
        return Value::str(std::move(out));
      }
      if ((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) {
        std::vector<Value> out = a.items();
        check_list_size(out.size() + b.items().size());
        out.insert(out.end(), b.items().begin(), b.items().end());
        return a.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
      }
      if ((a.is_string() && !a.is_markup()) || a.is_list() || a.is_tuple())
        type_error("can only concatenate ", a.type_name(), " (not \"", b.type_name(), "\") to ",
                   a.type_name());
      unsupported(op, a, b);
    case BinOp::kMul:
      if ((a.is_string() || a.is_sequence_like()) && b.is_integral()) return repeat(a, b.as_int());
      if ((b.is_string() || b.is_sequence_like()) && a.is_integral()) return repeat(b, a.as_int());
      if ((a.is_string() || a.is_sequence_like()) && b.is_number())
        type_error("can't multiply sequence by non-int of type '", b.type_name(), "'");
      unsupported(op, a, b);
    default:
      unsupported(op, a, b);
  }
}

namespace {

bool orderable(const Value& a, const Value& b) {
  return (a.is_number() && b.is_number()) || (a.is_string() && b.is_string()) ||
         (a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple());
}

}  // namespace

bool py_contains(const Value& needle, const Value& haystack) {
  switch (haystack.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!needle.is_string())
        type_error("'in <string>' requires string as left operand, not ", needle.type_name());
      return haystack.as_str().find(needle.as_str()) != std::string::npos;
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      for (const Value& v : haystack.items())
        if (py_equal(v, needle)) return true;
      return false;
    case Value::Kind::kDict:
      if (needle.is_list() || needle.is_dict())
        type_error("unhashable type: '", needle.type_name(), "'");
      return haystack.as_dict().find(needle) != nullptr;
    case Value::Kind::kIterator: {
      Iterator& it = haystack.as_iterator();
      while (it.pos < it.items.size())
        if (py_equal(it.items[it.pos++], needle)) return true;
      return false;
    }
    default:
      type_error("argument of type '", haystack.type_name(), "' is not iterable");
  }
}

bool py_compare(CmpOp op, const Value& a, const Value& b) {
  switch (op) {
    case CmpOp::kEq:
      return py_equal(a, b);
    case CmpOp::kNe:
      return !py_equal(a, b);
    case CmpOp::kIn:
      return py_contains(a, b);
    case CmpOp::kNotIn:
      return !py_contains(a, b);
    default:
      break;
  }
  const char* sym = op == CmpOp::kLt   ? "<"
                    : op == CmpOp::kLe ? "<="
                    : op == CmpOp::kGt ? ">"
                                       : ">=";
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  if (!orderable(a, b))
    type_error("'", sym, "' not supported between instances of '", a.type_name(), "' and '",
               b.type_name(), "'");
  switch (op) {
    case CmpOp::kLt:
      return py_less(a, b, sym);
    case CmpOp::kLe:
      return py_less(a, b, sym) || py_equal(a, b);
    case CmpOp::kGt:
      return py_less(b, a, sym);
    default:
      return py_less(b, a, sym) || py_equal(a, b);
  }
}

namespace {

void check_hashable(const Value& key) {
  if (key.is_list() || key.is_dict()) type_error("unhashable type: '", key.type_name(), "'");
}

std::optional<int64_t> slice_index(const Value& v) {
  if (v.is_none()) return std::nullopt;
  if (!v.is_integral())
    type_error("slice indices must be integers or None or have an __index__ method");
  return v.as_int();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Expressions

CallArgs ArgExprs::eval(Interp& in, const ScopePtr& scope) const {
  CallArgs args;
  args.positional.reserve(positional.size());
  for (const auto& e : positional) args.positional.push_back(in.eval(*e, scope));
  if (star_args)
    for (Value& v : iterate(in.eval(*star_args, scope))) args.positional.push_back(std::move(v));
  for (const auto& [name, e] : keywords) args.keywords.emplace_back(name, in.eval(*e, scope));
  if (star_kwargs) {
    const Value d = in.eval(*star_kwargs, scope);
    if (!d.is_dict()) type_error("argument after ** must be a mapping, not ", d.type_name());
    for (const auto& [k, v] : d.as_dict().items()) {
      if (!k.is_string()) type_error("keywords must be strings");
      args.keywords.emplace_back(k.as_str(), v);
    }
  }
  return args;
}

Value NameExpr::eval(Interp& in, const ScopePtr& scope) const { return in.lookup(scope, name); }

Value ListExpr::eval(Interp& in, const ScopePtr& scope) const {
  std::vector<Value> values;
  values.reserve(items.size());
  for (const auto& e : items) values.push_back(in.eval(*e, scope));
  return tuple ? Value::tuple(std::move(values)) : Value::list(std::move(values));
}

Value DictExpr::eval(Interp& in, const ScopePtr& scope) const {
  auto d = std::make_shared<Dict>();
  for (const auto& [k, v] : items) {
    Value key = in.eval(*k, scope);
    check_hashable(key);
    d->set(std::move(key), in.eval(*v, scope));
  }
  return Value::dict(std::move(d));
}

Value GetAttrExpr::eval(Interp& in, const ScopePtr& scope) const {
  return in.get_attr(in.eval(*object, scope), name);
}

Value SliceExpr::eval(Interp&, const ScopePtr&) const {
  type_error("a slice is only valid inside [ ]");
}

Value GetItemExpr::eval(Interp& in, const ScopePtr& scope) const {
  const Value obj = in.eval(*object, scope);
  const auto* slice = dynamic_cast<const SliceExpr*>(key.get());
  if (!slice) return in.get_item(obj, in.eval(*key, scope));
  if (obj.is_undefined()) undefined_error(obj);
  std::optional<int64_t> start, stop;
  int64_t step = 1;
  if (slice->start) start = slice_index(in.eval(*slice->start, scope));
  if (slice->stop) stop = slice_index(in.eval(*slice->stop, scope));
  if (slice->step) {
    if (auto s = slice_index(in.eval(*slice->step, scope))) step = *s;
  }
  if (step == 0) type_error("slice step cannot be zero");
  if (obj.is_string())
    return Value::str(text::slice(obj.as_str(), start, stop, step), obj.is_markup());
  // Slices are plain Python subscripts in Jinja's generated code: no Undefined fallback.
  if (obj.is_dict()) type_error("unhashable type: 'slice'");
  if (!obj.is_sequence_like()) type_error("'", obj.type_name(), "' object is not subscriptable");
  const auto& items = obj.items();
  std::vector<Value> out;
  for (int64_t i : text::slice_positions(int64_t(items.size()), start, stop, step))
    out.push_back(items[size_t(i)]);
  return obj.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

Value CallExpr::eval(Interp& in, const ScopePtr& scope) const { return invoke(in, scope, nullptr); }

Value CallExpr::invoke(Interp& in, const ScopePtr& scope, const Value* caller) const {
  if (const auto* attr = dynamic_cast<const GetAttrExpr*>(callee.get())) {
    // obj.method(...): Python looks up attributes before items, so methods win.
    const Value obj = in.eval(*attr->object, scope);
    CallArgs a = args.eval(in, scope);
    if (caller) a.keywords.emplace_back("caller", *caller);
    Value result;
    if (in.call_method(obj, attr->name, a, result)) return result;
    return in.call(in.get_attr(obj, attr->name), a);
  }
  const Value fn = in.eval(*callee, scope);
  CallArgs a = args.eval(in, scope);
  if (caller) a.keywords.emplace_back("caller", *caller);
  return in.call(fn, a);
}

Value FilterExpr::eval(Interp& in, const ScopePtr& scope) const {
  return apply(in, scope, Value());
}

Value FilterExpr::apply(Interp& in, const ScopePtr& scope, const Value& given) const {
  Value value;
  if (!input)
    value = given;
  else if (const auto* inner = dynamic_cast<const FilterExpr*>(input.get()))
    value = inner->apply(in, scope, given);
  else
    value = in.eval(*input, scope);
  CallArgs a = args.eval(in, scope);
  return in.filter(name, value, a);
}

Value TestExpr::eval(Interp& in, const ScopePtr& scope) const {
  const Value value = in.eval(*input, scope);
  CallArgs a = args.eval(in, scope);
  return Value::boolean(in.test(name, value, a));
}

Value UnaryExpr::eval(Interp& in, const ScopePtr& scope) const {
  const Value v = in.eval(*operand, scope);
  if (op == UnaryOp::kNot) return Value::boolean(!v.truthy());
  if (v.is_undefined()) undefined_error(v);
  if (v.is_integral()) {
    if (op == UnaryOp::kPos) return Value::integer(v.as_int());
    if (v.as_int() == INT64_MIN) overflow();
    return Value::integer(-v.as_int());
  }
  if (v.is_float()) return Value::number(op == UnaryOp::kNeg ? -v.as_double() : v.as_double());
  type_error("bad operand type for unary ", op == UnaryOp::kNeg ? "-" : "+", ": '", v.type_name(),
             "'");
}

Value BinaryExpr::eval(Interp& in, const ScopePtr& scope) const {
  const Value a = in.eval(*left, scope);
  const Value b = in.eval(*right, scope);
  return binary_op(in, op, a, b);
}

Value LogicExpr::eval(Interp& in, const ScopePtr& scope) const {
  Value l = in.eval(*left, scope);
  if (l.truthy() != is_and) return l;
  return in.eval(*right, scope);
}

Value ConcatExpr::eval(Interp& in, const ScopePtr& scope) const {
  std::string out;
  for (const auto& p : parts) {
    append_str(out, in.eval(*p, scope));
    if (out.size() > size_limits().max_string_bytes) type_error("string too long");
  }
  return Value::str(std::move(out));
}

Value CompareExpr::eval(Interp& in, const ScopePtr& scope) const {
  Value left = in.eval(*first, scope);
  for (const auto& [op, e] : rest) {
    Value right = in.eval(*e, scope);
    if (!py_compare(op, left, right)) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value CondExpr::eval(Interp& in, const ScopePtr& scope) const {
  if (in.eval(*test, scope).truthy()) return in.eval(*then_expr, scope);
  if (else_expr) return in.eval(*else_expr, scope);
  return Value::undefined(str_cat("the inline if-expression on line ", line,
                                  " evaluated to false and no else section was defined."));
}

// ---------------------------------------------------------------------------------------------
// Statements

Flow OutputStmt::exec(Interp& in, const ScopePtr& scope, std::string& out) const {
  for (const Item& item : items) {
    if (!item.expr) {
      out += item.text;
    } else {
      try {
        append_str(out, in.eval(*item.expr, scope));
      } catch (TemplateError& e) {
        if (!e.line) e.line = item.line;
        throw;
      }
    }
    in.check_output(out);
  }
  return Flow::kNormal;
}

Flow IfStmt::exec(Interp& in, const ScopePtr& scope, std::string& out) const {
  for (const auto& [test, body] : branches)
    if (in.eval(*test, scope).truthy()) return in.exec_body(body, scope, out);
  return in.exec_body(else_body, scope, out);
}

Flow ForStmt::exec(Interp& in, const ScopePtr& scope, std::string& out) const {
  run(in, scope, in.eval(*iterable, scope), 0, out);
  return Flow::kNormal;
}

void ForStmt::run(Interp& in, const ScopePtr& scope, const Value& iterable_value, int depth,
                  std::string& out) const {
  auto loop = std::make_shared<LoopObject>();
  std::vector<Value> items = iterate(iterable_value);
  if (filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      in.count_step();
      auto probe = std::make_shared<Scope>();
      probe->parent = scope;
      in.assign(target, item, probe);
      if (in.eval(*filter, probe).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    in.exec_body(else_body, in.child_scope(scope, else_unbound), out);
    return;
  }
  loop->items = std::move(items);
  loop->depth = depth;
  if (recursive) {
    loop->node = this;
    loop->outer = scope;
  }
  const Value loop_value = Value::object(loop);
  for (size_t i = 0; i < loop->items.size(); ++i) {
    in.count_step();
    loop->index = i;
    ScopePtr child = in.child_scope(scope, body_unbound);
    child->vars.emplace_back("loop", loop_value);
    in.assign(target, loop->items[i], child);
    if (in.exec_body(body, child, out) == Flow::kBreak) break;
  }
}

Flow SetStmt::exec(Interp& in, const ScopePtr& scope, std::string&) const {
  in.assign(target, in.eval(*value, scope), scope);
  return Flow::kNormal;
}

Flow SetBlockStmt::exec(Interp& in, const ScopePtr& scope, std::string&) const {
  std::string captured;
  in.exec_body(body, in.child_scope(scope, unbound), captured);
  Value value = Value::str(std::move(captured));
  if (filter) value = filter->apply(in, scope, value);
  in.assign(target, std::move(value), scope);
  return Flow::kNormal;
}

Flow MacroStmt::exec(Interp& in, const ScopePtr& scope, std::string&) const {
  scope->set(def.name, Value::object(std::make_shared<MacroObject>(def, scope)));
  in.note_closure(scope);
  return Flow::kNormal;
}

Flow CallBlockStmt::exec(Interp& in, const ScopePtr& scope, std::string& out) const {
  const Value caller_macro = Value::object(std::make_shared<MacroObject>(caller, scope));
  in.note_closure(scope);
  append_str(out, call->invoke(in, scope, &caller_macro));
  in.check_output(out);
  return Flow::kNormal;
}

Flow FilterBlockStmt::exec(Interp& in, const ScopePtr& scope, std::string& out) const {
  std::string captured;
  in.exec_body(body, in.child_scope(scope, unbound), captured);
  append_str(out, filter->apply(in, scope, Value::str(std::move(captured))));
  in.check_output(out);
  return Flow::kNormal;
}

Flow WithStmt::exec(Interp& in, const ScopePtr& scope, std::string& out) const {
  ScopePtr child = in.child_scope(scope, unbound);
  for (const auto& [target, value] : assignments) in.assign(target, in.eval(*value, scope), child);
  return in.exec_body(body, child, out);
}

// ---------------------------------------------------------------------------------------------
// Objects

std::string NamespaceObject::repr() const {
  return str_cat("<Namespace ", py_repr(Value::dict(std::make_shared<Dict>(attrs))), ">");
}

Value NamespaceObject::get_attr(Interp&, std::string_view name) {
  if (const Value* v = attrs.find(name)) return *v;
  return Value::undefined(str_cat("'Namespace object' has no attribute '", name, "'"));
}

Value MacroObject::get_attr(Interp& in, std::string_view name) {
  if (name == "name") return Value::str(def_.name);
  if (name == "arguments") {
    std::vector<Value> names;
    for (const auto& p : def_.params) names.push_back(Value::str(p.name));
    return Value::tuple(std::move(names));
  }
  if (name == "catch_kwargs") return Value::boolean(def_.uses_kwargs);
  if (name == "catch_varargs") return Value::boolean(def_.uses_varargs);
  if (name == "caller") return Value::boolean(def_.uses_caller);
  return Object::get_attr(in, name);
}

std::string LoopObject::repr() const {
  return str_cat("<LoopContext ", index + 1, "/", items.size(), ">");
}

Value LoopObject::get_attr(Interp& in, std::string_view name) {
  const int64_t n = int64_t(items.size()), i = int64_t(index);
  if (name == "index") return Value::integer(i + 1);
  if (name == "index0") return Value::integer(i);
  if (name == "revindex") return Value::integer(n - i);
  if (name == "revindex0") return Value::integer(n - i - 1);
  if (name == "first") return Value::boolean(i == 0);
  if (name == "last") return Value::boolean(i == n - 1);
  if (name == "length") return Value::integer(n);
  if (name == "depth") return Value::integer(depth + 1);
  if (name == "depth0") return Value::integer(depth);
  if (name == "previtem")
    return i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item");
  if (name == "nextitem")
    return i + 1 < n ? items[size_t(i + 1)] : Value::undefined("there is no next item");
  if (has_method(name))
    return Value::object(
        std::make_shared<BoundMethod>(Value::object(shared_from_this()), std::string(name)));
  return Object::get_attr(in, name);
}

bool LoopObject::call_method(Interp&, std::string_view name, CallArgs& args, Value& result) {
  if (name == "cycle") {
    if (!args.keywords.empty()) type_error("cycle() takes no keyword arguments");
    if (args.positional.empty()) type_error("no items for cycling given");
    result = args.positional[index % args.positional.size()];
    return true;
  }
  if (name == "changed") {
    Value current = Value::tuple(args.positional);
    const bool changed = !last_changed || !py_equal(*last_changed, current);
    last_changed = std::move(current);
    result = Value::boolean(changed);
    return true;
  }
  return false;
}

Value LoopObject::call(Interp& in, CallArgs& args) {
  if (!node)
    type_error("Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.");
  if (args.positional.size() != 1 || !args.keywords.empty())
    type_error("loop() takes exactly one argument (the items of the next level)");
  std::string out;
  node->run(in, outer, args.positional[0], depth + 1, out);
  return Value::str(std::move(out));
}

std::string BoundMethod::repr() const {
  return str_cat("<built-in method ", name_, " of ", self_.type_name(), " object>");
}

Value BoundMethod::call(Interp& in, CallArgs& args) {
  Value result;
  if (!in.call_method(self_, name_, args, result))
    type_error("'", self_.type_name(), "' object has no method '", name_, "'");
  return result;
}

// ---------------------------------------------------------------------------------------------
// Interp

class Interp::DepthGuard {
 public:
  explicit DepthGuard(Interp& in) : in_(in) {
    if (++in_.depth_ > in_.options_.limits.max_depth)
      type_error("maximum recursion depth exceeded (template nesting or macro recursion over ",
                 in_.options_.limits.max_depth, " levels)");
  }
  ~DepthGuard() { --in_.depth_; }

 private:
  Interp& in_;
};

Interp::Interp(const RenderOptions& options, const Json& context)
    : options_(options), now_(options.now ? *options.now : DateTime::now_local()) {
  if (!context.is_null() && !context.is_object())
    fail("the template context must be a JSON object");
  context_ = context.is_null() ? Value::dict() : Value::from_json(context);
}

Interp::~Interp() {
  // Break reference cycles (a macro stored in the scope it closes over, a list appended to
  // itself) so that everything the render created is freed.
  for (const ScopePtr& scope : closures_) scope->vars.clear();
  for (const Value& v : mutated_) {
    if (v.is_list())
      v.as_list().items.clear();
    else if (v.is_dict())
      v.as_dict().clear();
    else if (v.is_object())
      if (auto* ns = dynamic_cast<NamespaceObject*>(&v.as_object())) ns->attrs.clear();
  }
}

std::string Interp::render(const Program& program) {
  const SizeLimits saved = size_limits();
  size_limits() = SizeLimits{options_.limits.max_string_bytes, options_.limits.max_list_items};
  struct Restore {
    SizeLimits saved;
    ~Restore() { size_limits() = saved; }
  } restore{saved};
  ScopePtr root = child_scope(nullptr, program.unbound);
  std::string out;
  try {
    exec_body(program.body, root, out);
  } catch (const TemplateError& e) {
    if (e.line) fail("template error (line ", e.line, "): ", e.what());
    fail("template error: ", e.what());
  }
  root->vars.clear();
  return out;
}

void Interp::count_step() {
  if (++steps_ > options_.limits.max_steps)
    type_error("the template ran too long (over ", options_.limits.max_steps, " evaluation steps)");
}

Value Interp::eval(const Expr& e, const ScopePtr& scope) {
  count_step();
  DepthGuard guard(*this);
  return e.eval(*this, scope);
}

Flow Interp::exec_body(const Body& body, const ScopePtr& scope, std::string& out) {
  DepthGuard guard(*this);
  for (const StmtPtr& stmt : body) {
    count_step();
    Flow flow;
    try {
      flow = stmt->exec(*this, scope, out);
    } catch (TemplateError& e) {
      if (!e.line) e.line = stmt->line;
      throw;
    }
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

void Interp::check_output(const std::string& out) const {
  if (out.size() > options_.limits.max_string_bytes)
    type_error("the output is too long (over ", options_.limits.max_string_bytes, " bytes)");
}

ScopePtr Interp::child_scope(const ScopePtr& parent, const UnboundNames& unbound) {
  auto scope = std::make_shared<Scope>();
  scope->parent = parent;
  for (const std::string& name : unbound)
    scope->vars.emplace_back(name, Value::undefined(str_cat("'", name, "' is undefined")));
  return scope;
}

Value Interp::lookup(const ScopePtr& scope, std::string_view name) {
  for (Scope* s = scope.get(); s; s = s->parent.get())
    if (Value* v = s->find_local(name)) return *v;
  if (const Value* v = context_.as_dict().find(name)) return *v;
  if (const Value* v = find_global(name)) return *v;
  return Value::undefined(str_cat("'", name, "' is undefined"));
}

void Interp::assign(const Target& target, Value value, const ScopePtr& scope) {
  switch (target.kind) {
    case Target::Kind::kName:
      scope->set(target.name, std::move(value));
      return;
    case Target::Kind::kTuple: {
      if (!value.is_undefined() && !value.is_string() && !value.is_sequence_like() &&
          !value.is_dict() && !value.is_iterator())
        type_error("cannot unpack non-iterable ", value.type_name(), " object");
      std::vector<Value> items = iterate(value);
      const size_t n = target.items.size();
      if (items.size() > n) type_error("too many values to unpack (expected ", n, ")");
      if (items.size() < n)
        type_error("not enough values to unpack (expected ", n, ", got ", items.size(), ")");
      for (size_t i = 0; i < n; ++i) assign(target.items[i], std::move(items[i]), scope);
      return;
    }
    case Target::Kind::kNamespaceAttr: {
      const Value ns = lookup(scope, target.name);
      auto* object = ns.is_object() ? dynamic_cast<NamespaceObject*>(&ns.as_object()) : nullptr;
      if (!object) type_error("cannot assign attribute on non-namespace object");
      object->attrs.set(Value::str(target.attr), std::move(value));
      note_mutation(ns);
      return;
    }
  }
}

namespace {

std::string object_description(const Value& obj) {
  if (obj.is_none()) return "'None'";
  return str_cat("'", obj.type_name(), " object'");
}

}  // namespace

Value Interp::get_attr(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_object()) return obj.as_object().get_attr(*this, name);
  if (has_builtin_method(obj, name))
    return Value::object(std::make_shared<BoundMethod>(obj, std::string(name)));
  if (obj.is_dict())
    if (const Value* v = obj.as_dict().find(name)) return *v;
  return Value::undefined(str_cat(object_description(obj), " has no attribute '", name, "'"));
}

Value Interp::get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_dict() && !key.is_list() && !key.is_dict()) {
    if (const Value* v = obj.as_dict().find(key)) return *v;
  } else if ((obj.is_sequence_like() || obj.is_string()) && key.is_integral()) {
    int64_t i = key.as_int();
    if (obj.is_string()) {
      if (auto ch = text::at(obj.as_str(), i)) return Value::str(std::move(*ch), obj.is_markup());
    } else {
      const auto& items = obj.items();
      if (i < 0) i += int64_t(items.size());
      if (i >= 0 && i < int64_t(items.size())) return items[size_t(i)];
    }
  }
  // Jinja falls back to the attribute for string keys (so d['items'] can be the method).
  if (key.is_string()) return get_attr(obj, key.as_str());
  // Jinja quotes the type in "has no attribute" messages but not in this one.
  const std::string type = obj.is_none() ? "None" : str_cat(obj.type_name(), " object");
  return Value::undefined(str_cat(type, " has no element ", py_repr(key)));
}

Value Interp::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) undefined_error(callee);
  if (callee.is_object() && callee.as_object().callable())
    return callee.as_object().call(*this, args);
  type_error("'", callee.type_name(), "' object is not callable");
}

bool Interp::call_method(const Value& obj, std::string_view name, CallArgs& args, Value& result) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_object()) return obj.as_object().call_method(*this, name, args, result);
  return call_builtin_method(*this, obj, name, args, result);
}

Value Interp::filter(std::string_view name, const Value& input, CallArgs& args) {
  return apply_filter(*this, name, input, args);
}

bool Interp::test(std::string_view name, const Value& input, CallArgs& args) {
  return apply_test(*this, name, input, args);
}

Value Interp::call_macro(const MacroDef& def, const ScopePtr& closure, CallArgs& args) {
  auto scope = std::make_shared<Scope>();
  scope->parent = closure;
  const size_t n = def.params.size();
  std::vector<bool> given(n, false);
  for (size_t i = 0; i < args.positional.size() && i < n; ++i) {
    scope->vars.emplace_back(def.params[i].name, args.positional[i]);
    given[i] = true;
  }
  std::vector<Value> extra_positional;
  for (size_t i = n; i < args.positional.size(); ++i)
    extra_positional.push_back(args.positional[i]);
  if (!extra_positional.empty() && !def.uses_varargs)
    type_error("macro '", def.name, "' takes not more than ", n, " argument(s)");
  auto extra_keywords = std::make_shared<Dict>();
  Value caller;
  bool has_caller = false;
  for (auto& [key, value] : args.keywords) {
    bool matched = false;
    for (size_t i = args.positional.size(); i < n; ++i)
      if (def.params[i].name == key && !given[i]) {
        scope->vars.emplace_back(key, value);
        given[i] = true;
        matched = true;
        break;
      }
    if (matched) continue;
    if (key == "caller" && def.uses_caller) {
      caller = value;
      has_caller = true;
    } else if (def.uses_kwargs) {
      extra_keywords->set(Value::str(key), value);
    } else {
      type_error("macro '", def.name, "' takes no keyword argument '", key, "'");
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (given[i]) continue;
    const MacroParam& p = def.params[i];
    scope->vars.emplace_back(
        p.name, p.default_value
                    ? eval(*p.default_value, scope)
                    : Value::undefined(str_cat("parameter '", p.name, "' was not provided")));
  }
  if (def.uses_varargs)
    scope->vars.emplace_back("varargs", Value::tuple(std::move(extra_positional)));
  if (def.uses_kwargs) scope->vars.emplace_back("kwargs", Value::dict(std::move(extra_keywords)));
  if (def.uses_caller)
    scope->vars.emplace_back("caller", has_caller ? caller : Value::undefined("No caller defined"));
  for (const std::string& name : def.unbound)
    scope->vars.emplace_back(name, Value::undefined(str_cat("'", name, "' is undefined")));
  std::string out;
  exec_body(def.body, scope, out);
  return Value::str(std::move(out));
}

void Interp::note_mutation(const Value& container) {
  if (mutated_seen_.insert(container.identity()).second) mutated_.push_back(container);
}

void Interp::note_closure(const ScopePtr& scope) {
  if (closures_seen_.insert(scope.get()).second) closures_.push_back(scope);
}

// ---------------------------------------------------------------------------------------------
// DateTime and Template

DateTime DateTime::parse(std::string_view s) {
  DateTime t;
  int n = 0;
  char sep = 'T';
  const std::string text(s);
  const int fields = std::sscanf(text.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d%n", &t.year, &t.month,
                                 &t.day, &sep, &t.hour, &t.minute, &t.second, &n);
  bool ok = false;
  if (fields == 3 && text.size() == 10) {
    ok = true;
  } else if (fields >= 7 && (sep == 'T' || sep == ' ')) {
    size_t pos = size_t(n);
    if (pos < text.size() && text[pos] == '.') {
      size_t digits = 0;
      int micro = 0;
      for (++pos; pos < text.size() && std::isdigit((unsigned char)text[pos]); ++pos, ++digits)
        if (digits < 6) micro = micro * 10 + (text[pos] - '0');
      for (size_t d = digits; d < 6; ++d) micro *= 10;
      t.microsecond = micro;
      ok = digits > 0 && pos == text.size();
    } else {
      ok = pos == text.size();
    }
  }
  static const int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (!ok || t.year < 1 || t.month < 1 || t.month > 12 || t.day < 1 || t.day > kDays[t.month - 1] ||
      t.hour > 23 || t.minute > 59 || t.second > 59 || t.hour < 0 || t.minute < 0 || t.second < 0)
    fail("bad date-time \"", s, "\" (expected YYYY-MM-DDTHH:MM:SS)");
  return t;
}

DateTime DateTime::now_local() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&secs, &tm);
  DateTime t;
  t.year = tm.tm_year + 1900;
  t.month = tm.tm_mon + 1;
  t.day = tm.tm_mday;
  t.hour = tm.tm_hour;
  t.minute = tm.tm_min;
  t.second = tm.tm_sec;
  t.microsecond =
      int(std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
          1000000);
  return t;
}

Template::Template(std::string_view source) : program_(parse(source)) {}
Template::~Template() = default;
Template::Template(const Template&) = default;
Template& Template::operator=(const Template&) = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Json& context, const RenderOptions& options) const {
  Interp in(options, context);
  return in.render(*program_);
}

}  // namespace muse::jinja
