// Internal to the Jinja interpreter: tokens, the syntax tree, scopes and the evaluator.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "chat/jinja.h"
#include "chat/jinja_value.h"

namespace muse::jinja {

// ---------------------------------------------------------------------------------------------
// Tokens

enum class Tok {
  kData,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEof
};

struct Token {
  Tok type;
  std::string text;  // data, name, operator, or the unescaped string literal
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// Jinja's lexer with trim_blocks, lstrip_blocks and whitespace control already applied to the
// data tokens; comments and raw blocks are resolved here too.
std::vector<Token> tokenize(std::string_view source);

// ---------------------------------------------------------------------------------------------
// Scopes: for-loop bodies, macros and with-blocks open one; if-blocks do not. Names resolve
// through the chain, then the render context, then the globals.

struct Scope {
  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> vars;

  Value* find_local(std::string_view name) {
    for (auto& [k, v] : vars)
      if (k == name) return &v;
    return nullptr;
  }
  void set(std::string_view name, Value value) {
    if (Value* v = find_local(name))
      *v = std::move(value);
    else
      vars.emplace_back(std::string(name), std::move(value));
  }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { kNormal, kBreak, kContinue };

// Jinja2 resolves names per scope at compile time: a name whose first use in a scope is an
// unconditional assignment, and that no enclosing scope mentions, starts out undefined in
// that scope (even if the context has it). The parser lists those names for every scope.
using UnboundNames = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------
// Syntax tree

struct Expr {
  explicit Expr(int line) : line(line) {}
  virtual ~Expr() = default;
  virtual Value eval(Interp& in, const ScopePtr& scope) const = 0;
  int line;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Stmt {
  explicit Stmt(int line) : line(line) {}
  virtual ~Stmt() = default;
  virtual Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const = 0;
  int line;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct ArgExprs {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
  ExprPtr star_args, star_kwargs;  // *args, **kwargs
  CallArgs eval(Interp& in, const ScopePtr& scope) const;
};

struct ConstExpr : Expr {
  ConstExpr(int line, Value v) : Expr(line), value(std::move(v)) {}
  Value eval(Interp&, const ScopePtr&) const override { return value; }
  Value value;
};

struct NameExpr : Expr {
  NameExpr(int line, std::string n) : Expr(line), name(std::move(n)) {}
  Value eval(Interp& in, const ScopePtr& scope) const override;
  std::string name;
};

struct ListExpr : Expr {
  ListExpr(int line, bool tuple) : Expr(line), tuple(tuple) {}
  Value eval(Interp& in, const ScopePtr& scope) const override;
  std::vector<ExprPtr> items;
  bool tuple;
};

struct DictExpr : Expr {
  using Expr::Expr;
  Value eval(Interp& in, const ScopePtr& scope) const override;
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

struct GetAttrExpr : Expr {
  GetAttrExpr(int line, ExprPtr o, std::string n)
      : Expr(line), object(std::move(o)), name(std::move(n)) {}
  Value eval(Interp& in, const ScopePtr& scope) const override;
  ExprPtr object;
  std::string name;
};

struct SliceExpr : Expr {
  using Expr::Expr;
  Value eval(Interp& in, const ScopePtr& scope) const override;  // a TypeError outside [ ]
  ExprPtr start, stop, step;
};

struct GetItemExpr : Expr {
  GetItemExpr(int line, ExprPtr o, ExprPtr k)
      : Expr(line), object(std::move(o)), key(std::move(k)) {}
  Value eval(Interp& in, const ScopePtr& scope) const override;
  ExprPtr object, key;
};

struct CallExpr : Expr {
  using Expr::Expr;
  Value eval(Interp& in, const ScopePtr& scope) const override;
  // With `caller`, passes it as the keyword argument caller= ({% call %} blocks).
  Value invoke(Interp& in, const ScopePtr& scope, const Value* caller) const;
  ExprPtr callee;
  ArgExprs args;
};

struct FilterExpr : Expr {
  using Expr::Expr;
  Value eval(Interp& in, const ScopePtr& scope) const override;
  // Applies the chain; `given` stands in for the null input at its bottom.
  Value apply(Interp& in, const ScopePtr& scope, const Value& given) const;
  ExprPtr input;  // null at the bottom of a filter block's or block set's chain
  std::string name;
  ArgExprs args;
};

struct TestExpr : Expr {
  using Expr::Expr;
  Value eval(Interp& in, const ScopePtr& scope) const override;
  ExprPtr input;
  std::string name;
  ArgExprs args;
};

enum class UnaryOp { kNeg, kPos, kNot };
struct UnaryExpr : Expr {
  UnaryExpr(int line, UnaryOp op, ExprPtr e) : Expr(line), op(op), operand(std::move(e)) {}
  Value eval(Interp& in, const ScopePtr& scope) const override;
  UnaryOp op;
  ExprPtr operand;
};

enum class BinOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };
struct BinaryExpr : Expr {
  BinaryExpr(int line, BinOp op, ExprPtr l, ExprPtr r)
      : Expr(line), op(op), left(std::move(l)), right(std::move(r)) {}
  Value eval(Interp& in, const ScopePtr& scope) const override;
  BinOp op;
  ExprPtr left, right;
};

struct LogicExpr : Expr {  // and / or: return an operand, as Python does
  LogicExpr(int line, bool is_and, ExprPtr l, ExprPtr r)
      : Expr(line), is_and(is_and), left(std::move(l)), right(std::move(r)) {}
  Value eval(Interp& in, const ScopePtr& scope) const override;
  bool is_and;
  ExprPtr left, right;
};

struct ConcatExpr : Expr {  // a ~ b ~ c
  using Expr::Expr;
  Value eval(Interp& in, const ScopePtr& scope) const override;
  std::vector<ExprPtr> parts;
};

enum class CmpOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };
struct CompareExpr : Expr {  // a < b <= c chains like Python
  using Expr::Expr;
  Value eval(Interp& in, const ScopePtr& scope) const override;
  ExprPtr first;
  std::vector<std::pair<CmpOp, ExprPtr>> rest;
};

struct CondExpr : Expr {  // a if b else c; without else an Undefined
  using Expr::Expr;
  Value eval(Interp& in, const ScopePtr& scope) const override;
  ExprPtr test, then_expr, else_expr;
};

// Assignment targets: a name, a tuple of targets (unpacking), or namespace.attr.
struct Target {
  enum class Kind { kName, kTuple, kNamespaceAttr } kind = Kind::kName;
  std::string name, attr;
  std::vector<Target> items;
};

struct OutputStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  struct Item {
    std::string text;  // when expr is null
    ExprPtr expr;
    int line = 0;
  };
  std::vector<Item> items;
};

struct IfStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body else_body;
};

struct ForStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  // Runs the loop over `items` (for recursive loops, loop(children) re-enters here).
  void run(Interp& in, const ScopePtr& scope, const Value& iterable, int depth,
           std::string& out) const;
  Target target;
  ExprPtr iterable, filter;
  Body body, else_body;
  UnboundNames body_unbound, else_unbound;
  bool recursive = false;
};

struct SetStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  Target target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  Target target;
  std::unique_ptr<FilterExpr> filter;  // may be null
  Body body;
  UnboundNames unbound;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct MacroDef {
  std::string name;
  std::vector<MacroParam> params;
  Body body;
  UnboundNames unbound;
  bool uses_varargs = false, uses_kwargs = false, uses_caller = false;
};

struct MacroStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  MacroDef def;
};

struct CallBlockStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  MacroDef caller;  // the body, called as caller(...)
  std::unique_ptr<CallExpr> call;
};

struct FilterBlockStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  std::unique_ptr<FilterExpr> filter;
  Body body;
  UnboundNames unbound;
};

struct LoopControlStmt : Stmt {
  LoopControlStmt(int line, Flow f) : Stmt(line), flow(f) {}
  Flow exec(Interp&, const ScopePtr&, std::string&) const override { return flow; }
  Flow flow;
};

// Also {% block %} and {% generation %}: a body in its own scope.
struct WithStmt : Stmt {
  using Stmt::Stmt;
  Flow exec(Interp& in, const ScopePtr& scope, std::string& out) const override;
  std::vector<std::pair<Target, ExprPtr>> assignments;
  Body body;
  UnboundNames unbound;
};

struct Program {
  Body body;
  UnboundNames unbound;
};

std::unique_ptr<Program> parse(std::string_view source);

// ---------------------------------------------------------------------------------------------
// The evaluator of one render.

class Interp {
 public:
  Interp(const RenderOptions& options, const Json& context);
  ~Interp();
  Interp(const Interp&) = delete;
  Interp& operator=(const Interp&) = delete;

  std::string render(const Program& program);

  // Every evaluation goes through these two, which count steps and depth.
  Value eval(const Expr& e, const ScopePtr& scope);
  Flow exec_body(const Body& body, const ScopePtr& scope, std::string& out);
  void count_step();

  // A scope for a nested body, with its unbound names bound to Undefined.
  ScopePtr child_scope(const ScopePtr& parent, const UnboundNames& unbound);
  Value lookup(const ScopePtr& scope, std::string_view name);
  void assign(const Target& target, Value value, const ScopePtr& scope);
  Value get_attr(const Value& obj, std::string_view name);
  Value get_item(const Value& obj, const Value& key);
  Value call(const Value& callee, CallArgs& args);
  // obj.name(args); false when obj has no such method.
  bool call_method(const Value& obj, std::string_view name, CallArgs& args, Value& result);
  Value filter(std::string_view name, const Value& input, CallArgs& args);
  bool test(std::string_view name, const Value& input, CallArgs& args);
  Value call_macro(const MacroDef& def, const ScopePtr& closure, CallArgs& args);

  // Lists, dicts and namespaces that were mutated, and scopes that macros closed over, can
  // form reference cycles; the render clears them when it ends.
  void note_mutation(const Value& container);
  void note_closure(const ScopePtr& scope);
  // Fails when a render's output passes the string size limit.
  void check_output(const std::string& out) const;

  const RenderOptions& options() const { return options_; }
  const DateTime& now() const { return now_; }

 private:
  class DepthGuard;
  const RenderOptions& options_;
  DateTime now_;
  Value context_;
  uint64_t steps_ = 0;
  int depth_ = 0;
  std::vector<Value> mutated_;
  std::unordered_set<const void*> mutated_seen_;
  std::vector<ScopePtr> closures_;
  std::unordered_set<const void*> closures_seen_;
};

// ---------------------------------------------------------------------------------------------
// Objects the evaluator creates.

class NamespaceObject : public Object {
 public:
  std::string type_name() const override { return "Namespace"; }
  std::string repr() const override;
  Value get_attr(Interp& in, std::string_view name) override;
  Dict attrs;
};

class MacroObject : public Object {
 public:
  MacroObject(const MacroDef& def, ScopePtr closure) : def_(def), closure_(std::move(closure)) {}
  std::string type_name() const override { return "Macro"; }
  std::string repr() const override { return "<Macro '" + def_.name + "'>"; }
  Value get_attr(Interp& in, std::string_view name) override;
  bool callable() const override { return true; }
  Value call(Interp& in, CallArgs& args) override { return in.call_macro(def_, closure_, args); }

 private:
  const MacroDef& def_;
  ScopePtr closure_;
};

// `loop` inside a for loop.
class LoopObject : public Object {
 public:
  std::string type_name() const override { return "LoopContext"; }
  std::string repr() const override;
  Value get_attr(Interp& in, std::string_view name) override;
  bool has_method(std::string_view name) const override {
    return name == "cycle" || name == "changed";
  }
  bool call_method(Interp& in, std::string_view name, CallArgs& args, Value& result) override;
  bool callable() const override { return node != nullptr; }
  Value call(Interp& in, CallArgs& args) override;  // loop(children) in recursive loops

  std::vector<Value> items;
  size_t index = 0;
  int depth = 0;
  const ForStmt* node = nullptr;  // set for recursive loops
  ScopePtr outer;
  std::optional<Value> last_changed;
};

// obj.method, looked up but not yet called.
class BoundMethod : public Object {
 public:
  BoundMethod(Value self, std::string name) : self_(std::move(self)), name_(std::move(name)) {}
  std::string type_name() const override { return "builtin_function_or_method"; }
  std::string repr() const override;
  bool callable() const override { return true; }
  Value call(Interp& in, CallArgs& args) override;

 private:
  Value self_;
  std::string name_;
};

// A global function (range, namespace, raise_exception, ...).
class BuiltinFunction : public Object {
 public:
  using Fn = Value (*)(Interp& in, CallArgs& args);
  BuiltinFunction(std::string name, Fn fn) : name_(std::move(name)), fn_(fn) {}
  std::string type_name() const override { return "function"; }
  std::string repr() const override { return "<function " + name_ + ">"; }
  bool callable() const override { return true; }
  Value call(Interp& in, CallArgs& args) override { return fn_(in, args); }

 private:
  std::string name_;
  Fn fn_;
};

// Python's operators: arithmetic, comparisons (including in / not in).
Value binary_op(Interp& in, BinOp op, const Value& a, const Value& b);
bool py_compare(CmpOp op, const Value& a, const Value& b);
bool py_contains(const Value& needle, const Value& haystack);

// Builtins (jinja_builtins.cpp).
Value apply_filter(Interp& in, std::string_view name, const Value& input, CallArgs& args);
bool apply_test(Interp& in, std::string_view name, const Value& input, CallArgs& args);
bool has_builtin_method(const Value& obj, std::string_view name);
bool call_builtin_method(Interp& in, const Value& obj, std::string_view name, CallArgs& args,
                         Value& result);
const Value* find_global(std::string_view name);
// Python's "%" on a str (printf-style formatting).
std::string percent_format(Interp& in, const std::string& format, const Value& args);

// Binds call arguments Python-style to the parameters of a builtin.
class ArgReader {
 public:
  ArgReader(std::string_view function, CallArgs& args) : function_(function), args_(args) {}
  // The parameter at `position` (or given by `name`); `fallback` when absent.
  Value get(size_t position, std::string_view name, Value fallback = Value());
  // A keyword-only parameter.
  Value keyword(std::string_view name, Value fallback = Value());
  bool has(size_t position, std::string_view name) const;
  // Fails on arguments no get() consumed.
  void done();

 private:
  std::string_view function_;
  CallArgs& args_;
  size_t used_positional_ = 0;
  std::vector<bool> used_keywords_;
};

}  // namespace muse::jinja
