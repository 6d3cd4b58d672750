// A recursive-descent parser with Jinja2's grammar and operator precedence (jinja2/parser.py):
// conditional < or < and < not < comparisons < + - < ~ < * / // % < ** < unary - + < postfix
// (. [] ()) < filters and tests.
#include <algorithm>
#include <unordered_set>

#include "chat/jinja_internal.h"

namespace muse::jinja {
namespace {

constexpr int kMaxNesting = 200;  // nested expressions and blocks in the source

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  std::unique_ptr<Program> parse_program() {
    auto program = std::make_unique<Program>();
    push_frame(&program->unbound);
    program->body = subparse({});
    pop_frame();
    resolve_unbound_names();
    return program;
  }

 private:
  // ---- token helpers
  const Token& cur() const { return toks_[pos_]; }
  const Token& look(size_t n = 1) const { return toks_[std::min(pos_ + n, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool is_op(std::string_view op) const { return cur().type == Tok::kOp && cur().text == op; }
  bool is_name(std::string_view name) const {
    return cur().type == Tok::kName && cur().text == name;
  }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }

  [[noreturn]] void error(const std::string& msg, int line = 0) const {
    fail("template syntax error (line ", line ? line : cur().line, "): ", msg);
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::kData:
        return "template data / text";
      case Tok::kVarBegin:
        return "begin of print statement";
      case Tok::kVarEnd:
        return "end of print statement";
      case Tok::kBlockBegin:
        return "begin of statement block";
      case Tok::kBlockEnd:
        return "end of statement block";
      case Tok::kEof:
        return "end of template";
      case Tok::kString:
        return "string";
      case Tok::kInt:
        return "integer";
      case Tok::kFloat:
        return "float";
      default:
        return t.text;
    }
  }

  void expect(Tok type, const char* what) {
    if (cur().type != type)
      error(str_cat("expected token '", what, "', got '", describe(cur()), "'"));
    next();
  }
  void expect_op(std::string_view op) {
    if (!is_op(op)) error(str_cat("expected token '", op, "', got '", describe(cur()), "'"));
    next();
  }
  void expect_name(std::string_view name) {
    if (!is_name(name)) error(str_cat("expected token '", name, "', got '", describe(cur()), "'"));
    next();
  }
  std::string expect_identifier() {
    if (cur().type != Tok::kName)
      error(str_cat("expected token 'name', got '", describe(cur()), "'"));
    return next().text;
  }

  class Nesting {
   public:
    explicit Nesting(Parser& p) : p_(p) {
      if (++p_.nesting_ > kMaxNesting) p_.error("template nesting too deep");
    }
    ~Nesting() { --p_.nesting_; }

   private:
    Parser& p_;
  };

  // ---- name resolution (see UnboundNames)

  struct FrameRecord {
    int parent;
    std::unordered_set<std::string> refs;  // names this scope mentions itself
    std::vector<std::string> first_used_by_assignment;
    int if_depth = 0;
    UnboundNames* out;
  };

  FrameRecord& frame() { return frames_[size_t(frame_stack_.back())]; }

  int push_frame(UnboundNames* out) {
    frames_.push_back(FrameRecord{frame_stack_.empty() ? -1 : frame_stack_.back(), {}, {}, 0, out});
    frame_stack_.push_back(int(frames_.size() - 1));
    return frame_stack_.back();
  }
  void pop_frame() { frame_stack_.pop_back(); }

  void note_load(const std::string& name) {
    if (!parsing_target_) frame().refs.insert(name);
  }
  void note_param(const std::string& name) { frame().refs.insert(name); }
  void note_store(const std::string& name) {
    FrameRecord& f = frame();
    // Assignments inside an if leave the name resolved from outside (Jinja's branch_update).
    if (f.if_depth == 0 && !f.refs.count(name)) f.first_used_by_assignment.push_back(name);
    f.refs.insert(name);
  }
  void note_stores(const Target& t) {
    switch (t.kind) {
      case Target::Kind::kName:
        note_store(t.name);
        break;
      case Target::Kind::kTuple:
        for (const Target& item : t.items) note_stores(item);
        break;
      case Target::Kind::kNamespaceAttr:
        note_load(t.name);
        break;
    }
  }
  void note_params(const Target& t) {
    if (t.kind == Target::Kind::kName) note_param(t.name);
    for (const Target& item : t.items) note_params(item);
  }

  void resolve_unbound_names() {
    for (const FrameRecord& f : frames_)
      for (const std::string& name : f.first_used_by_assignment) {
        bool outer = false;
        for (int p = f.parent; p >= 0 && !outer; p = frames_[size_t(p)].parent)
          outer = frames_[size_t(p)].refs.count(name) > 0;
        if (!outer) f.out->push_back(name);
      }
  }

  Body parse_frame_body(UnboundNames* unbound, const std::vector<std::string_view>& end_names) {
    push_frame(unbound);
    Body body = parse_statements(end_names, true);
    pop_frame();
    return body;
  }

  Target parse_target(bool with_tuple, const std::vector<std::string_view>& extra_end,
                      bool with_namespace) {
    parsing_target_ = true;
    Target t = parse_assign_target(with_tuple, extra_end, with_namespace);
    parsing_target_ = false;
    return t;
  }

  // ---- statements

  // Parses until a block tag whose name is in `end_names`, and stops on that name.
  Body subparse(const std::vector<std::string_view>& end_names) {
    Nesting guard(*this);
    Body body;
    OutputStmt* output = nullptr;
    auto out = [&]() -> OutputStmt& {
      if (!output) {
        auto stmt = std::make_unique<OutputStmt>(cur().line);
        output = stmt.get();
        body.push_back(std::move(stmt));
      }
      return *output;
    };
    while (cur().type != Tok::kEof) {
      const Token& t = cur();
      if (t.type == Tok::kData) {
        OutputStmt::Item item;
        item.text = t.text;
        item.line = t.line;
        out().items.push_back(std::move(item));
        next();
      } else if (t.type == Tok::kVarBegin) {
        next();
        OutputStmt::Item item;
        item.line = cur().line;
        item.expr = parse_tuple(false, true, {}, false);
        out().items.push_back(std::move(item));
        expect(Tok::kVarEnd, "end of print statement");
      } else if (t.type == Tok::kBlockBegin) {
        output = nullptr;
        next();
        if (cur().type == Tok::kName &&
            std::find(end_names.begin(), end_names.end(), cur().text) != end_names.end())
          return body;
        body.push_back(parse_statement(end_names));
        expect(Tok::kBlockEnd, "end of statement block");
      } else {
        error(str_cat("unexpected '", describe(t), "'"));
      }
    }
    if (!end_names.empty()) {
      std::string expected;
      for (auto n : end_names) expected += str_cat(expected.empty() ? "" : " or ", "'", n, "'");
      error(str_cat(
          "Unexpected end of template. Jinja was looking for the following tags: ", expected, "."));
    }
    return body;
  }

  Body parse_statements(const std::vector<std::string_view>& end_names, bool drop_needle) {
    skip_op(":");
    expect(Tok::kBlockEnd, "end of statement block");
    Body body = subparse(end_names);
    if (drop_needle) next();
    return body;
  }

  StmtPtr parse_statement(const std::vector<std::string_view>& end_names) {
    const Token& t = cur();
    if (t.type != Tok::kName) error("tag name expected");
    const std::string tag = t.text;
    const int line = t.line;
    if (tag == "for") return parse_for();
    if (tag == "if") return parse_if();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "call") return parse_call_block();
    if (tag == "filter") return parse_filter_block();
    if (tag == "with") return parse_with();
    if (tag == "block") return parse_block();
    if (tag == "print") return parse_print();
    if (tag == "generation") {  // Hugging Face's AssistantTracker tag: renders its body
      next();
      auto stmt = std::make_unique<WithStmt>(line);
      stmt->body = parse_frame_body(&stmt->unbound, {"endgeneration"});
      return stmt;
    }
    if (tag == "break" || tag == "continue") {
      next();
      if (loop_depth_ == 0) error(str_cat("'", tag, "' outside loop"), line);
      return std::make_unique<LoopControlStmt>(line,
                                               tag == "break" ? Flow::kBreak : Flow::kContinue);
    }
    if (tag == "extends" || tag == "include" || tag == "import" || tag == "from")
      error(str_cat("'", tag, "' is not supported: a chat template cannot load other templates"),
            line);
    std::string msg = str_cat("Encountered unknown tag '", tag, "'.");
    if (!end_names.empty()) {
      std::string looking;
      for (auto n : end_names) looking += str_cat(looking.empty() ? "" : " or ", "'", n, "'");
      msg += str_cat(" Jinja was looking for the following tags: ", looking, ".");
    }
    error(msg, line);
  }

  StmtPtr parse_for() {
    auto stmt = std::make_unique<ForStmt>(next().line);
    stmt->target = parse_target(true, {"in"}, false);
    expect_name("in");
    stmt->iterable = parse_tuple(false, false, {"recursive"}, false);
    push_frame(&stmt->body_unbound);
    note_params(stmt->target);
    if (skip_name("if")) stmt->filter = parse_expression(true);
    stmt->recursive = skip_name("recursive");
    ++loop_depth_;
    stmt->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    pop_frame();
    if (next().text != "endfor")
      stmt->else_body = parse_frame_body(&stmt->else_unbound, {"endfor"});
    return stmt;
  }

  StmtPtr parse_if() {
    auto stmt = std::make_unique<IfStmt>(next().line);
    ++frame().if_depth;
    while (true) {
      ExprPtr test = parse_tuple(false, false, {}, false);
      Body body = parse_statements({"elif", "else", "endif"}, false);
      stmt->branches.emplace_back(std::move(test), std::move(body));
      const std::string which = next().text;
      if (which == "elif") continue;
      if (which == "else") stmt->else_body = parse_statements({"endif"}, true);
      break;
    }
    --frame().if_depth;
    return stmt;
  }

  StmtPtr parse_set() {
    const int line = next().line;
    Target target = parse_target(true, {}, true);
    if (skip_op("=")) {
      auto stmt = std::make_unique<SetStmt>(line);
      stmt->value = parse_tuple(false, true, {}, false);
      note_stores(target);
      stmt->target = std::move(target);
      return stmt;
    }
    auto stmt = std::make_unique<SetBlockStmt>(line);
    if (is_op("|")) stmt->filter = parse_filter_chain(nullptr, false);
    note_stores(target);
    stmt->target = std::move(target);
    stmt->body = parse_frame_body(&stmt->unbound, {"endset"});
    return stmt;
  }

  void parse_signature(MacroDef& def) {
    expect_op("(");
    while (!is_op(")")) {
      if (!def.params.empty()) expect_op(",");
      MacroParam param;
      param.name = expect_identifier();
      note_param(param.name);
      if (skip_op("="))
        param.default_value = parse_expression(true);
      else if (!def.params.empty() && def.params.back().default_value)
        error("non-default argument follows default argument");
      def.params.push_back(std::move(param));
    }
    expect_op(")");
  }

  // A macro body (its frame already pushed): names it mentions decide whether it takes
  // varargs, kwargs and caller.
  Body parse_macro_body(MacroDef& def, std::string_view end_name) {
    macros_.push_back(&def);
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    Body body = parse_statements({end_name}, true);
    loop_depth_ = saved_loop_depth;
    macros_.pop_back();
    pop_frame();
    return body;
  }

  StmtPtr parse_macro() {
    auto stmt = std::make_unique<MacroStmt>(next().line);
    stmt->def.name = expect_identifier();
    note_store(stmt->def.name);
    push_frame(&stmt->def.unbound);
    parse_signature(stmt->def);
    stmt->def.body = parse_macro_body(stmt->def, "endmacro");
    return stmt;
  }

  StmtPtr parse_call_block() {
    auto stmt = std::make_unique<CallBlockStmt>(next().line);
    stmt->caller.name = "caller";
    const int caller_frame = push_frame(&stmt->caller.unbound);
    if (is_op("(")) parse_signature(stmt->caller);
    frame_stack_.pop_back();  // the call itself belongs to the enclosing scope
    ExprPtr call = parse_expression(true);
    frame_stack_.push_back(caller_frame);
    auto* as_call = dynamic_cast<CallExpr*>(call.get());
    if (!as_call) error("expected call", stmt->line);
    call.release();
    stmt->call.reset(as_call);
    stmt->caller.body = parse_macro_body(stmt->caller, "endcall");
    return stmt;
  }

  StmtPtr parse_filter_block() {
    auto stmt = std::make_unique<FilterBlockStmt>(next().line);
    stmt->filter = parse_filter_chain(nullptr, true);
    stmt->body = parse_frame_body(&stmt->unbound, {"endfilter"});
    return stmt;
  }

  StmtPtr parse_with() {
    auto stmt = std::make_unique<WithStmt>(next().line);
    while (cur().type != Tok::kBlockEnd) {
      if (!stmt->assignments.empty()) expect_op(",");
      Target target = parse_target(true, {}, false);
      expect_op("=");
      stmt->assignments.emplace_back(std::move(target), parse_expression(true));
    }
    push_frame(&stmt->unbound);
    for (const auto& assignment : stmt->assignments) note_params(assignment.first);
    stmt->body = parse_statements({"endwith"}, true);
    pop_frame();
    return stmt;
  }

  StmtPtr parse_block() {
    auto stmt = std::make_unique<WithStmt>(next().line);
    const std::string name = expect_identifier();
    skip_name("scoped");
    skip_name("required");
    stmt->body = parse_frame_body(&stmt->unbound, {"endblock"});
    skip_name(name);
    return stmt;
  }

  StmtPtr parse_print() {
    auto stmt = std::make_unique<OutputStmt>(next().line);
    while (cur().type != Tok::kBlockEnd) {
      if (!stmt->items.empty()) expect_op(",");
      OutputStmt::Item item;
      item.line = cur().line;
      item.expr = parse_expression(true);
      stmt->items.push_back(std::move(item));
    }
    return stmt;
  }

  // ---- assignment targets

  Target to_target(const Expr& e) {
    if (auto* name = dynamic_cast<const NameExpr*>(&e)) {
      Target t;
      t.name = name->name;
      return t;
    }
    if (auto* list = dynamic_cast<const ListExpr*>(&e); list && list->tuple) {
      Target t;
      t.kind = Target::Kind::kTuple;
      for (const auto& item : list->items) t.items.push_back(to_target(*item));
      return t;
    }
    error("can't assign to this expression", e.line);
  }

  Target parse_assign_target(bool with_tuple, const std::vector<std::string_view>& extra_end,
                             bool with_namespace) {
    if (with_namespace && cur().type == Tok::kName && look().type == Tok::kOp &&
        look().text == ".") {
      Target t;
      t.kind = Target::Kind::kNamespaceAttr;
      t.name = next().text;
      next();
      t.attr = expect_identifier();
      return t;
    }
    ExprPtr e = with_tuple ? parse_tuple(true, true, extra_end, false) : parse_primary();
    return to_target(*e);
  }

  // ---- expressions

  ExprPtr parse_expression(bool with_condexpr) {
    Nesting guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    int line = cur().line;
    ExprPtr expr1 = parse_or();
    while (skip_name("if")) {
      auto cond = std::make_unique<CondExpr>(line);
      cond->test = parse_or();
      if (skip_name("else")) cond->else_expr = parse_condexpr();
      cond->then_expr = std::move(expr1);
      expr1 = std::move(cond);
      line = cur().line;
    }
    return expr1;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const int line = next().line;
      left = std::make_unique<LogicExpr>(line, false, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const int line = next().line;
      left = std::make_unique<LogicExpr>(line, true, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Nesting guard(*this);
      const int line = next().line;
      return std::make_unique<UnaryExpr>(line, UnaryOp::kNot, parse_not());
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr expr = parse_math1();
    std::vector<std::pair<CmpOp, ExprPtr>> ops;
    while (true) {
      static const std::pair<const char*, CmpOp> kOps[] = {{"==", CmpOp::kEq}, {"!=", CmpOp::kNe},
                                                           {"<", CmpOp::kLt},  {"<=", CmpOp::kLe},
                                                           {">", CmpOp::kGt},  {">=", CmpOp::kGe}};
      bool matched = false;
      for (const auto& [text, op] : kOps)
        if (is_op(text)) {
          next();
          ops.emplace_back(op, parse_math1());
          matched = true;
          break;
        }
      if (matched) continue;
      if (skip_name("in")) {
        ops.emplace_back(CmpOp::kIn, parse_math1());
      } else if (is_name("not") && look().type == Tok::kName && look().text == "in") {
        next();
        next();
        ops.emplace_back(CmpOp::kNotIn, parse_math1());
      } else {
        break;
      }
    }
    if (ops.empty()) return expr;
    auto cmp = std::make_unique<CompareExpr>(line);
    cmp->first = std::move(expr);
    cmp->rest = std::move(ops);
    return cmp;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const BinOp op = cur().text == "+" ? BinOp::kAdd : BinOp::kSub;
      const int line = next().line;
      left = std::make_unique<BinaryExpr>(line, op, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto concat = std::make_unique<ConcatExpr>(line);
    concat->parts.push_back(std::move(first));
    while (skip_op("~")) concat->parts.push_back(parse_math2());
    return concat;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string& t = cur().text;
      const BinOp op = t == "*"    ? BinOp::kMul
                       : t == "/"  ? BinOp::kDiv
                       : t == "//" ? BinOp::kFloorDiv
                                   : BinOp::kMod;
      const int line = next().line;
      left = std::make_unique<BinaryExpr>(line, op, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const int line = next().line;
      left = std::make_unique<BinaryExpr>(line, BinOp::kPow, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Nesting guard(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const UnaryOp op = cur().text == "-" ? UnaryOp::kNeg : UnaryOp::kPos;
      const int line = next().line;
      node = std::make_unique<UnaryExpr>(line, op, parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  void note_name(const std::string& name) {
    for (MacroDef* m : macros_) {
      if (name == "varargs") m->uses_varargs = true;
      if (name == "kwargs") m->uses_kwargs = true;
      if (name == "caller") m->uses_caller = true;
    }
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const int line = t.line;
    if (t.type == Tok::kName) {
      const std::string name = next().text;
      if (name == "true" || name == "True")
        return std::make_unique<ConstExpr>(line, Value::boolean(true));
      if (name == "false" || name == "False")
        return std::make_unique<ConstExpr>(line, Value::boolean(false));
      if (name == "none" || name == "None") return std::make_unique<ConstExpr>(line, Value::none());
      note_name(name);
      note_load(name);
      return std::make_unique<NameExpr>(line, name);
    }
    if (t.type == Tok::kString) {
      std::string s;
      while (cur().type == Tok::kString) s += next().text;
      return std::make_unique<ConstExpr>(line, Value::str(std::move(s)));
    }
    if (t.type == Tok::kInt)
      return std::make_unique<ConstExpr>(line, Value::integer(next().int_value));
    if (t.type == Tok::kFloat)
      return std::make_unique<ConstExpr>(line, Value::number(next().float_value));
    if (is_op("(")) {
      next();
      ExprPtr e = parse_tuple(false, true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto list = std::make_unique<ListExpr>(line, false);
      while (!is_op("]")) {
        if (!list->items.empty()) expect_op(",");
        if (is_op("]")) break;
        list->items.push_back(parse_expression(true));
      }
      expect_op("]");
      return list;
    }
    if (is_op("{")) {
      next();
      auto dict = std::make_unique<DictExpr>(line);
      while (!is_op("}")) {
        if (!dict->items.empty()) expect_op(",");
        if (is_op("}")) break;
        ExprPtr key = parse_expression(true);
        expect_op(":");
        dict->items.emplace_back(std::move(key), parse_expression(true));
      }
      expect_op("}");
      return dict;
    }
    error(str_cat("unexpected '", describe(t), "'"));
  }

  bool is_tuple_end(const std::vector<std::string_view>& extra_end) const {
    if (cur().type == Tok::kVarEnd || cur().type == Tok::kBlockEnd || is_op(")")) return true;
    return cur().type == Tok::kName &&
           std::find(extra_end.begin(), extra_end.end(), cur().text) != extra_end.end();
  }

  // Expressions separated by commas form a tuple; `simplified` allows only names and literals
  // (assignment targets).
  ExprPtr parse_tuple(bool simplified, bool with_condexpr,
                      const std::vector<std::string_view>& extra_end, bool explicit_parentheses) {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      args.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
      if (is_op(","))
        is_tuple = true;
      else
        break;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parentheses)
        error(str_cat("Expected an expression, got '", describe(cur()), "'"));
    }
    auto tuple = std::make_unique<ListExpr>(line, true);
    tuple->items = std::move(args);
    return tuple;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("["))
        node = parse_subscript(std::move(node));
      else if (is_op("("))
        node = parse_call(std::move(node));
      else
        break;
    }
    return node;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|"))
        node = parse_filter_chain(std::move(node), false);
      else if (is_name("is"))
        node = parse_test(std::move(node));
      else if (is_op("("))
        node = parse_call(std::move(node));
      else
        break;
    }
    return node;
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& t = next();
    const int line = t.line;
    if (t.text == ".") {
      const Token& attr = next();
      if (attr.type == Tok::kName)
        return std::make_unique<GetAttrExpr>(line, std::move(node), attr.text);
      if (attr.type != Tok::kInt) error("expected name or number", attr.line);
      return std::make_unique<GetItemExpr>(
          line, std::move(node), std::make_unique<ConstExpr>(line, Value::integer(attr.int_value)));
    }
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    if (args.size() == 1)
      return std::make_unique<GetItemExpr>(line, std::move(node), std::move(args[0]));
    auto tuple = std::make_unique<ListExpr>(line, true);
    tuple->items = std::move(args);
    return std::make_unique<GetItemExpr>(line, std::move(node), std::move(tuple));
  }

  ExprPtr parse_subscribed() {
    const int line = cur().line;
    auto slice = std::make_unique<SliceExpr>(line);
    if (is_op(":")) {
      next();
    } else {
      ExprPtr e = parse_expression(true);
      if (!is_op(":")) return e;
      next();
      slice->start = std::move(e);
    }
    if (!is_op(":") && !is_op("]") && !is_op(",")) slice->stop = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) slice->step = parse_expression(true);
    }
    return slice;
  }

  ArgExprs parse_call_args() {
    const int line = cur().line;
    expect_op("(");
    ArgExprs args;
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) error("invalid syntax for function call expression", line);
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!args.star_args && !args.star_kwargs);
        next();
        args.star_args = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!args.star_kwargs);
        next();
        args.star_kwargs = parse_expression(true);
      } else if (cur().type == Tok::kName && look().type == Tok::kOp && look().text == "=") {
        ensure(!args.star_kwargs);
        std::string key = next().text;
        next();
        args.keywords.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!args.star_args && !args.star_kwargs && args.keywords.empty());
        args.positional.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
    return args;
  }

  ExprPtr parse_call(ExprPtr node) {
    auto call = std::make_unique<CallExpr>(cur().line);
    call->callee = std::move(node);
    call->args = parse_call_args();
    return call;
  }

  std::string parse_dotted_name() {
    std::string name = expect_identifier();
    while (is_op(".")) {
      next();
      name += str_cat(".", expect_identifier());
    }
    return name;
  }

  // node|f1(args)|f2 ...; with start_inline the first "|" is implied ({% filter f %}).
  std::unique_ptr<FilterExpr> parse_filter_chain(ExprPtr node, bool start_inline) {
    std::unique_ptr<FilterExpr> result;
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      auto f = std::make_unique<FilterExpr>(cur().line);
      f->name = parse_dotted_name();
      if (is_op("(")) f->args = parse_call_args();
      f->input = result ? std::move(result) : std::move(node);
      result = std::move(f);
      start_inline = false;
    }
    return result;
  }

  ExprPtr parse_test(ExprPtr node) {
    const int line = next().line;  // "is"
    const bool negated = skip_name("not");
    auto test = std::make_unique<TestExpr>(line);
    test->input = std::move(node);
    test->name = parse_dotted_name();
    if (is_op("(")) {
      test->args = parse_call_args();
    } else if ((cur().type == Tok::kName || cur().type == Tok::kString || cur().type == Tok::kInt ||
                cur().type == Tok::kFloat || is_op("(") || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error("You cannot chain multiple tests with is");
      test->args.positional.push_back(parse_postfix(parse_primary()));
    }
    if (negated) return std::make_unique<UnaryExpr>(line, UnaryOp::kNot, std::move(test));
    return test;
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;
  std::vector<MacroDef*> macros_;
  std::vector<FrameRecord> frames_;
  std::vector<int> frame_stack_;
  bool parsing_target_ = false;
};

}  // namespace

std::unique_ptr<Program> parse(std::string_view source) {
  return Parser(tokenize(source)).parse_program();
}

}  // namespace muse::jinja
