// The Jinja interpreter against Jinja2 itself: expected strings below were rendered by Jinja2
// 3.1 the way Hugging Face's apply_chat_template configures it (sandboxed, trim_blocks,
// lstrip_blocks, loop controls, tojson as json.dumps). The reference test renders real model
// templates and must match Hugging Face's output byte for byte.
#include "chat/jinja.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

#include "testing/test_support.h"
#include "util/error.h"
#include "util/json.h"

namespace muse::jinja {
namespace {

RenderOptions fixed_clock() {
  RenderOptions o;
  o.now = DateTime::parse("2026-11-22T12:00:00");
  return o;
}

std::string render(const std::string& source, const std::string& context = "{}",
                   const RenderOptions& options = fixed_clock()) {
  return Template(source).render(Json::parse(context), options);
}

// The message of the muse::Error that rendering (or parsing) throws; "" when none is thrown.
std::string error_of(const std::string& source, const std::string& context = "{}",
                     const RenderOptions& options = fixed_clock()) {
  try {
    render(source, context, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* const kPeople =
    R"J({"users": [{"name": "bob", "age": 30, "admin": true}, {"name": "Alice")J"
    R"J(, "age": 25, "admin": false}, {"name": "carl", "age": 35}], "d": {"b": 2)J"
    R"J(, "a": 1, "C": 3}, "n": [3, 1, 2]})J";

// Expected values below come from Jinja2 3.1.6 (SandboxedEnvironment, trim_blocks,
// lstrip_blocks, loopcontrols).
TEST(JinjaTest, PrintsValuesLikePythonStr) {
  EXPECT_EQ(render(R"J({{ 1 }}|{{ 1.0 }}|{{ 1.5e3 }}|{{ 1e20 }}|{{ 1e-5 }}|{{ 0.1 + 0.2 }})J"
                   R"J(|{{ 1_000 }}|{{ 0x1F }}|{{ 0b101 }}|{{ 0o17 }})J"),
            "1|1.0|1500.0|1e+20|1e-05|0.30000000000000004|1000|31|5|15");
  EXPECT_EQ(render(R"J({{ true }}|{{ False }}|{{ none }}|{{ [1, 'a', none, true, 1.5] }})J"
                   R"J(|{{ {'a': 1, 'b': [1, 2]} }}|{{ (1,) }}|{{ (1, 2) }}|{{ () }})J"),
            "True|False|None|[1, 'a', None, True, 1.5]"
            "|{'a': 1, 'b': [1, 2]}|(1,)|(1, 2)|()");
  EXPECT_EQ(render(R"J({{ ['it\'s', "q\"", 'a\nb\\'] }}|{{ ['é', '\x7f'] }}|{{ 'x' 'y' }})J"),
            "[\"it's\", 'q\"', 'a\\nb\\\\']|['é', '\\x7f']|xy");
  EXPECT_EQ(render(R"J({{ 1e16 }}|{{ 1e15 }}|{{ 123456789.123 }}|{{ -0.0 }}|{{ 1 / 3 }})J"
                   R"J(|{{ 10 / 4 }})J"),
            "1e+16|1000000000000000.0|123456789.123|-0.0"
            "|0.3333333333333333|2.5");
  EXPECT_EQ(render(R"J({{ 1, 'a' }}|{{ x }})J", R"J({"x": {"k": [1.0, null, true, "v"]}})J"),
            "(1, 'a')|{'k': [1.0, None, True, 'v']}");
}

TEST(JinjaTest, StringLiteralEscapes) {
  EXPECT_EQ(render(R"J({{ 'a\tb\\c\'d' }}|{{ "\u00e9\x41\101" }}|{{ 'unknown \d escape' }})J"),
            "a\tb\\c'd|éAA|unknown \\d escape");
}

TEST(JinjaTest, ArithmeticFollowsPython) {
  EXPECT_EQ(render(R"J({{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 % -3 }})J"
                   R"J(|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 7 / 2 }}|{{ 6 / 2 }}|{{ 7.5 // 2 }})J"
                   R"J(|{{ -7.5 % 2 }})J"),
            "3|-4|1|2|-2|1024|0.5|3.5|3.0|3.0|0.5");
  EXPECT_EQ(render(R"J({{ 1 + 2 * 3 - 4 }}|{{ (1 + 2) * 3 }}|{{ -2 ** 2 }}|{{ 2 ** 3 ** 2 }})J"
                   R"J(|{{ 'ab' * 3 }}|{{ [1] * 3 }}|{{ 3 * 'x' }}|{{ 1 + 1.5 }}|{{ true + 1 }})J"),
            "3|9|4|64|ababab|[1, 1, 1]|xxx|2.5|2");
  EXPECT_EQ(render(R"J({{ 'a' ~ 1 ~ none ~ true ~ [1] ~ missing }}|{{ 1 ~ 2 }}|{{ [1] + [2] }})J"
                   R"J(|{{ (1,) + (2,) }})J"),
            "a1NoneTrue[1]|12|[1, 2]|(1, 2)");
}

TEST(JinjaTest, ComparisonsAndLogic) {
  EXPECT_EQ(render(R"J({{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 1 == 1.0 }}|{{ 'a' < 'b' }})J"
                   R"J(|{{ [1, 2] < [1, 3] }}|{{ 'a' in 'cat' }}|{{ 1 in [1, 2] }})J"
                   R"J(|{{ 'k' in {'k': 1} }}|{{ 3 not in [1] }})J"),
            "True|False|True|True|True|True|True|True|True");
  EXPECT_EQ(render(R"J({{ 1 and 2 }}|{{ 0 and 2 }}|{{ 0 or 'x' }}|{{ '' or [] }}|{{ not 0 }})J"
                   R"J(|{{ not [] }}|{{ none or 'd' }})J"),
            "2|0|x|[]|True|True|d");
  EXPECT_EQ(render(R"J({{ 'yes' if 1 else 'no' }}|{{ 'yes' if 0 else 'no' }}|[{{ 'yes' if 0 }}])J"
                   R"J(|{{ 'a' if false else 'b' if true else 'c' }})J"),
            "yes|no|[]|b");
  EXPECT_EQ(render(R"J({{ {'a': 1} == {'a': 1.0} }}|{{ [1] == (1,) }}|{{ none == none }})J"
                   R"J(|{{ missing == missing }}|{{ 1 != 2 }})J"),
            "True|False|True|True|True");
}

TEST(JinjaTest, AttributeItemAndSliceAccess) {
  EXPECT_EQ(render(R"J({{ x.y }}|{{ x['y'] }}|[{{ x.z }}]|[{{ x['z'] }}]|{{ x.items()|list }})J",
                   R"J({"x": {"y": 2}})J"),
            "2|2|[]|[]|[('y', 2)]");
  EXPECT_EQ(render(R"J({{ l[0] }}|{{ l[-1] }}|[{{ l[5] }}]|{{ l[1:] }}|{{ l[:-1] }})J"
                   R"J(|{{ l[::-1] }}|{{ l[::2] }}|{{ l[-2:] }}|{{ l[10:] }}|{{ l.0 }})J"
                   R"J(|{{ l[3:0:-1] }})J",
                   R"J({"l": [1, 2, 3, 4]})J"),
            "1|4|[]|[2, 3, 4]|[1, 2, 3]|[4, 3, 2, 1]|[1, 3]|[3, 4]|[]|1"
            "|[4, 3, 2]");
  EXPECT_EQ(render(R"J({{ s[0] }}|{{ s[-1] }}|{{ s[1:3] }}|{{ s[::-1] }}|{{ s|length }})J",
                   R"J({"s": "héllo"})J"),
            "h|o|él|olléh|5");
  EXPECT_EQ(render(R"J({% set t = (1, 2) %}{{ t[0] }}|{{ t[1:] }})J"), "1|(2,)");
}

TEST(JinjaTest, UndefinedBehavesLikeJinja) {
  EXPECT_EQ(render(R"J([{{ u }}]|{{ u is defined }}|{{ u is undefined }}|{{ u|default('d') }})J"
                   R"J(|{{ u|length }}|{{ u|list }}|{% for x in u %}x{% endfor %}|{{ u == u }})J"
                   R"J(|{{ u is none }}|[{{ u|trim }}]|{{ u is iterable }})J"),
            "[]|False|True|d|0|[]||True|False|[]|True");
  EXPECT_EQ(render(R"J([{{ none.x }}]|[{{ 'a'.x }}]|[{{ [].x }}]|[{{ d.missing }}])J"
                   R"J(|{{ d.missing is defined }})J",
                   R"J({"d": {}})J"),
            "[]|[]|[]|[]|False");
  EXPECT_EQ(render(R"J({{ '' ~ x|default('fallback', true) }}|{{ ''|default('empty', true) }})J"
                   R"J(|{{ 0|default(5) }}|{{ none|d('n') }})J"),
            "fallback|empty|0|None");
}

TEST(JinjaTest, StringMethods) {
  EXPECT_EQ(render(R"J({{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' a') }})J"
                   R"J(|{{ s.split(',') }}|{{ s.split() }}|{{ 'a b  c'.split(None, 1) }})J"
                   R"J(|{{ s.strip().split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }})J",
                   R"J({"s": "  a,b,,c  "})J"),
            "a,b,,c|a,b,,c  |  a,b,,c|,b,,c|['  a', 'b', '', 'c  ']"
            "|['a,b,,c']|['a', 'b  c']|['a', 'b,,c']|['a,b', 'c']");
  EXPECT_EQ(render(R"J({{ 'Hello'.startswith('He') }}|{{ 'Hello'.startswith(('x', 'H')) }})J"
                   R"J(|{{ 'Hello'.endswith('lo') }}|{{ 'Hello'.endswith(('x', 'y')) }})J"
                   R"J(|{{ 'abc'.find('c') }}|{{ 'abc'.find('z') }}|{{ 'abca'.rfind('a') }})J"
                   R"J(|{{ 'aaa'.count('a') }}|{{ 'héllo'.find('l') }})J"),
            "True|True|True|False|2|-1|3|3|2");
  EXPECT_EQ(render(R"J({{ 'a-b'.replace('-', '+') }}|{{ 'ab'.upper() }}|{{ 'AB'.lower() }})J"
                   R"J(|{{ 'hello world'.title() }}|{{ 'hello World'.capitalize() }})J"
                   R"J(|{{ ', '.join(['a', 'b']) }})J"),
            "a+b|AB|ab|Hello World|Hello world|a, b");
  EXPECT_EQ(render(R"J({{ '{} and {}'.format(1, 'x') }}|{{ '{0}{1}{0}'.format('a', 'b') }})J"
                   R"J(|{{ '{x}!'.format(x=5) }}|{{ '{:>5}|{:<5}|{:^5}|{:05d}|{:.2f}|{:,}|{:x})J"
                   R"J(|{:+d}'.format('a', 'b', 'c', 42, 3.14159, 1234567, 255, 5) }})J"
                   R"J(|{{ '{!r}'.format('a') }})J"),
            "1 and x|aba|5!|    a|b    |  c  |00042|3.14|1,234,567|ff|+5"
            "|'a'");
  EXPECT_EQ(render(R"J({{ 'abc'.center(9, '*') }}|{{ 'abc'.ljust(5) }})J"
                   R"J(|{{ 'abc'.rjust(5, '.') }}|{{ '42'.zfill(5) }}|{{ 'abc'.isalpha() }})J"
                   R"J(|{{ '123'.isdigit() }}|{{ ' '.isspace() }}|{{ 'ab1'.isalnum() }})J"),
            "***abc***|abc  |..abc|00042|True|True|True|True");
  EXPECT_EQ(render(R"J({{ 'a=b=c'.partition('=') }}|{{ 'a=b=c'.rpartition('=') }})J"
                   R"J(|{{ 'prefix_x'.removeprefix('prefix_') }})J"
                   R"J(|{{ 'x.txt'.removesuffix('.txt') }}|{{ 'a\nb\r\nc'.splitlines() }})J"),
            "('a', '=', 'b=c')|('a=b', '=', 'c')|x|x|['a', 'b', 'c']");
  EXPECT_EQ(render(R"J({{ '%s and %s' % ('a', 'b') }}|{{ '%d%%' % 50 }}|{{ '%5.2f|%-5d|%05d|%x)J"
                   R"J(|%r' % (3.14159, 42, 42, 255, 'a') }})J"
                   R"J(|{{ '%(a)s-%(b)s' % {'a': 1, 'b': 2} }}|{{ '%.3d|%+d' % (5, 3) }})J"),
            "a and b|50%| 3.14|42   |00042|ff|'a'|1-2|005|+3");
}

TEST(JinjaTest, ListAndDictMethods) {
  EXPECT_EQ(render(R"J({% set x = [1] %}{% set _ = x.append(2) %}{% set _ = x.extend([3, 4]) %})J"
                   R"J({% set _ = x.insert(0, 0) %}{{ x }})J"
                   R"J(|{{ x.pop() }}|{{ x.pop(0) }}|{{ x }}|{{ x.index(2) }}|{{ x.count(1) }})J"),
            "[0, 1, 2, 3, 4]|4|0|[1, 2, 3]|1|1");
  EXPECT_EQ(render(R"J({% set ns = namespace(items=[]) %}{% for i in range(3) %}{% set _ = ns.i)J"
                   R"J(tems.append(i) %}{% endfor %}{{ ns.items }})J"),
            "[0, 1, 2]");
  EXPECT_EQ(render(R"J({{ d.get('x') }}|{{ d.get('z') }}|{{ d.get('z', 9) }}|{{ d.keys())J"
                   R"J(|list }}|{{ d.values()|list }}|{{ d.items()|list }})J"
                   R"J(|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %})J",
                   R"J({"d": {"x": 1, "y": 2}})J"),
            "1|None|9|['x', 'y']|[1, 2]|[('x', 1), ('y', 2)]|x=1;y=2;");
  EXPECT_EQ(render(R"J({% set d = {} %}{% set _ = d.update({'a': 1}) %})J"
                   R"J({% set _ = d.update(b=2) %}{{ d }})J"
                   R"J(|{{ d.pop('a') }}|{{ d }}|{{ d.setdefault('c', 3) }}|{{ d }})J"),
            "{'a': 1, 'b': 2}|1|{'b': 2}|3|{'b': 2, 'c': 3}");
  EXPECT_EQ(render(R"J({% set l = [3, 1, 2] %}{% set _ = l.sort() %}{{ l }}{% set _ = l.reverse)J"
                   R"J(() %}{{ l }}{% set _ = l.remove(1) %}{{ l }})J"),
            "[1, 2, 3][3, 2, 1][3, 2]");
}

TEST(JinjaTest, SelectionFilters) {
  EXPECT_EQ(render(R"J({{ users|map(attribute='name')|join(', ') }}|{{ users)J"
                   R"J(|selectattr('admin')|map(attribute='name')|list }}|{{ users)J"
                   R"J(|rejectattr('admin')|list|length }})J",
                   kPeople),
            "bob, Alice, carl|['bob']|2");
  EXPECT_EQ(render(R"J({{ users|selectattr('age', 'gt', 28)|map(attribute='name')|list }})J"
                   R"J(|{{ users|selectattr('name', 'equalto', 'bob')|first }}|{{ users)J"
                   R"J(|selectattr('admin', 'defined')|list|length }})J",
                   kPeople),
            "['bob', 'carl']|{'name': 'bob', 'age': 30, 'admin': True}|2");
  EXPECT_EQ(render(R"J({{ n|select('odd')|list }}|{{ n|reject('odd')|list }}|{{ n|select)J"
                   R"J(|list }}|{{ n|map('string')|join('-') }}|{{ ['a', 'b']|map('upper'))J"
                   R"J(|list }}|{{ users|map(attribute='missing', default='?')|list }})J",
                   kPeople),
            "[3, 1]|[2]|[3, 1, 2]|3-1-2|['A', 'B']|['?', '?', '?']");
  EXPECT_EQ(render(R"J({{ n|select('greaterthan', 1)|list }}|{{ n|select('in', [1, 3])|list }})J"
                   R"J(|{{ users|selectattr('name', 'in', ['bob', 'carl'])|map(attribute='age'))J"
                   R"J(|list }})J",
                   kPeople),
            "[3, 2]|[3, 1]|[30, 35]");
}

TEST(JinjaTest, SortingAndAggregates) {
  EXPECT_EQ(render(R"J({{ d|dictsort }}|{{ d|dictsort(reverse=true) }}|{{ d)J"
                   R"J(|dictsort(by='value') }}|{{ d|dictsort(true) }}|{{ d|items|list }})J",
                   kPeople),
            "[('a', 1), ('b', 2), ('C', 3)]"
            "|[('C', 3), ('b', 2), ('a', 1)]"
            "|[('a', 1), ('b', 2), ('C', 3)]"
            "|[('C', 3), ('a', 1), ('b', 2)]"
            "|[('b', 2), ('a', 1), ('C', 3)]");
  EXPECT_EQ(render(R"J({{ n|sort }}|{{ n|sort(reverse=true) }}|{{ users|sort(attribute='age'))J"
                   R"J(|map(attribute='name')|list }}|{{ ['b', 'A', 'c']|sort }})J"
                   R"J(|{{ ['b', 'A', 'c']|sort(case_sensitive=true) }})J",
                   kPeople),
            "[1, 2, 3]|[3, 2, 1]|['Alice', 'bob', 'carl']|['A', 'b', 'c']"
            "|['A', 'b', 'c']");
  EXPECT_EQ(render(R"J({{ [1, 2, 3]|first }}|{{ [1, 2, 3]|last }}|[{{ []|first }}]|{{ 'abc')J"
                   R"J(|first }}|{{ d|first }}|{{ [1, 2, 3]|sum }}|{{ [1, 2, 3]|max }})J"
                   R"J(|{{ ['a', 'B']|max }}|{{ [3, 1]|min }}|{{ users|sum(attribute='age') }})J"
                   R"J(|{{ users|max(attribute='age') }})J",
                   kPeople),
            "1|3|[]|a|b|6|3|B|1|90|{'name': 'carl', 'age': 35}");
  EXPECT_EQ(render(R"J({{ [1, 2, 2, 'a', 'A']|unique|list }}|{{ [1, 2, 3]|reverse|list }})J"
                   R"J(|{{ 'abc'|reverse }}|{{ [1, 2, 3]|batch(2)|list }}|{{ [1, 2, 3])J"
                   R"J(|batch(2, 'x')|list }}|{{ [1, 2, 3, 4, 5]|slice(2)|list }})J"),
            "[1, 2, 'a']|[3, 2, 1]|cba|[[1, 2], [3]]|[[1, 2], [3, 'x']]"
            "|[[1, 2, 3], [4, 5]]");
}

TEST(JinjaTest, StringFilters) {
  EXPECT_EQ(render(R"J({{ s|trim }}|{{ s|trim('H ') }}|{{ s|upper }}|{{ s|lower }})J"
                   R"J(|{{ 'hello world'|capitalize }}|{{ 'hELLO wORLD-foo (bar)'|title }}|{{ s)J"
                   R"J(|length }}|{{ s|wordcount }})J",
                   R"J({"s": "  Hello World  "})J"),
            "Hello World|ello World|  HELLO WORLD  |  hello world  "
            "|Hello world|Hello World-Foo (Bar)|15|2");
  EXPECT_EQ(render(R"J({{ 'a b'|replace(' ', '_') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'x')J"
                   R"J(|center(7) }}|[{{ 'a\nb\n\nc'|indent(2) }}]|[{{ 'a\nb')J"
                   R"J(|indent(2, true) }}]|[{{ 'a\n\nb'|indent(2, blank=true) }}]|[{{ 'a\nb')J"
                   R"J(|indent('> ') }}])J"),
            "a_b|bba|   x   |[a\n  b\n\n  c]|[  a\n  b]|[a\n  \n  b]|[a\n> b]");
  EXPECT_EQ(render(R"J({{ '<a href="x">'|e }}|{{ '<b>'|escape }}|{{ '<b>'|safe }}|{{ ('<b>')J"
                   R"J(|safe) + '<i>' }}|{{ '<i>' + ('<b>'|safe) }}|{{ ('<b>'|safe) ~ '<i>' }})J"
                   R"J(|{{ '%s-%d'|format('a', 3) }}|{{ '%(x)s'|format(x=1) }})J"),
            "&lt;a href=&#34;x&#34;&gt;|&lt;b&gt;|<b>|<b>&lt;i&gt;"
            "|&lt;i&gt;<b>|<b><i>|a-3|1");
  EXPECT_EQ(render(R"J({{ 'hello world foo'|truncate(9) }}|{{ 'hello world foo')J"
                   R"J(|truncate(9, true) }}|{{ 'hello'|truncate(3, true, '') }})J"
                   R"J(|{{ 'hello world foo bar baz'|truncate(12, leeway=0) }})J"),
            "hello...|hello ...|hello|hello...");
  EXPECT_EQ(render(R"J({{ s|string }}|{{ [1]|string }}|{{ none|string }}|{{ 1.5|string }})J"
                   R"J(|{{ {'a': 'b'}|string }}|{{ [1, 2]|join }}|{{ [1, 2]|join(',') }})J",
                   R"J({"s": "x"})J"),
            "x|[1]|None|1.5|{'a': 'b'}|12|1,2");
}

TEST(JinjaTest, NumberFilters) {
  EXPECT_EQ(render(R"J({{ '3'|int }}|{{ '3.7'|int }}|{{ 'x'|int }}|{{ 'x'|int(5) }}|{{ 3.9)J"
                   R"J(|int }}|{{ '0x1A'|int(0, 16) }}|{{ '12'|float }}|{{ 'a'|float }}|{{ true)J"
                   R"J(|int }}|{{ ' 4 '|int }})J"),
            "3|3|0|5|3|26|12.0|0.0|1|4");
  EXPECT_EQ(render(R"J({{ -3|abs }}|{{ (-3.5)|abs }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.675)J"
                   R"J(|round(2) }}|{{ 3.14159|round(2, 'floor') }}|{{ 3.1|round(0, 'ceil') }})J"
                   R"J(|{{ 5|round }}|{{ 1250|round(-2) }}|{{ 1350|round(-2) }})J"),
            "3|3.5|2.0|4.0|2.67|3.14|4.0|5|1200|1400");
}

TEST(JinjaTest, ToJsonMatchesPythonJsonDumps) {
  EXPECT_EQ(render(R"J({{ [1, 2]|tojson }}|{{ {'a': [1, {'b': none}], 'c': 'é"\n'}|tojson }})J"
                   R"J(|{{ 1.0|tojson }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ (1, 2))J"
                   R"J(|tojson }}|{{ 1e100|tojson }})J"),
            "[1, 2]|{\"a\": [1, {\"b\": null}], \"c\": \"é\\\"\\n\"}|1.0|\"\\u00e9\""
            "|[1, 2]|1e+100");
  EXPECT_EQ(render(R"J({{ d|tojson(indent=2) }}|{{ [1, [2, 3], {}]|tojson(indent=2) }}|{{ d)J"
                   R"J(|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ [[]])J"
                   R"J(|tojson(indent=0) }})J",
                   R"J({"d": {"b": 2, "a": [1]}})J"),
            "{\n  \"b\": 2,\n  \"a\": [\n    1\n  ]\n}"
            "|[\n  1,\n  [\n    2,\n    3\n  ],\n  {}\n]|{\"a\": [1], \"b\": 2}"
            "|{\"b\":2,\"a\":[1]}|[\n[]\n]");
  EXPECT_EQ(render(R"J({{ {1: 2, true: 3, none: 4}|tojson }}|{{ '\u2028\x01'|tojson }}|{{ tools)J"
                   R"J(|tojson }})J",
                   R"J({"tools": [{"type": "function", "function": {"name": "f")J"
                   R"J(, "parameters": {"z": 1, "a": 2.5}}}]})J"),
            "{\"1\": 3, \"null\": 4}|\"\u2028\\u0001\""
            "|[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters"
            "\": {\"z\": 1, \"a\": 2.5}}}]");
}

TEST(JinjaTest, Tests) {
  EXPECT_EQ(render(R"J({{ 1 is odd }}|{{ 2 is even }}|{{ 9 is divisibleby 3 }})J"
                   R"J(|{{ 9 is divisibleby(4) }}|{{ 'a' is string }}|{{ 1 is number }})J"
                   R"J(|{{ 1.0 is float }}|{{ 1 is integer }}|{{ true is integer }})J"
                   R"J(|{{ true is boolean }}|{{ true is number }})J"),
            "True|True|True|False|True|True|True|True|False|True|True");
  EXPECT_EQ(render(R"J({{ d is mapping }}|{{ d is iterable }}|{{ d is sequence }})J"
                   R"J(|{{ 'a' is sequence }}|{{ 1 is iterable }}|{{ none is none }})J"
                   R"J(|{{ 'abc' is lower }}|{{ 'ABC' is upper }}|{{ 'aB' is lower }})J"
                   R"J(|{{ range is callable }}|{{ 'x' is callable }})J",
                   R"J({"d": {}})J"),
            "True|True|True|True|False|True|True|True|False|True|False");
  EXPECT_EQ(render(R"J({{ 1 is eq 1 }}|{{ 1 is ne 2 }}|{{ 1 is lt 2 }}|{{ 2 is ge 2 }})J"
                   R"J(|{{ 'a' is in 'abc' }}|{{ 1 is in [2] }}|{{ true is true }})J"
                   R"J(|{{ 1 is true }}|{{ false is false }}|{{ 0 is false }})J"
                   R"J(|{{ none is sameas none }}|{{ 'upper' is filter }}|{{ 'odd' is test }})J"),
            "True|True|True|True|True|False|True|False|True|False|True"
            "|True|True");
  EXPECT_EQ(render(R"J({{ x is not none }}|{{ x is not defined }})J"
                   R"J(|{{ 'a' if x is none else 'b' }}|{{ x is defined and x }})J",
                   R"J({"x": null})J"),
            "False|False|a|None");
}

TEST(JinjaTest, ForLoops) {
  EXPECT_EQ(render(R"J({% for x in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ )J"
                   R"J(loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}{{ l)J"
                   R"J(oop.previtem }}{{ loop.nextitem }}{{ loop.cycle('o', 'e') }};{% endfor %})J",
                   R"J({"items": ["a", "b", "c"]})J"),
            "10TrueFalse332bo;21FalseFalse321ace;32FalseTrue310bo;");
  EXPECT_EQ(render(R"J({% for x in [] %}x{% else %}empty{% endfor %})J"
                   R"J(|{% for x in items if x != 'b' %}{{ x }}{{ loop.index }}{{ loop.length })J"
                   R"J(}{% else %}no{% endfor %})J",
                   R"J({"items": ["a", "b", "c"]})J"),
            "empty|a12c22");
  EXPECT_EQ(render(R"J({% for x in items %}{% if x == 'b' %}{% continue %}{% endif %}{{ x }}{% )J"
                   R"J(if x == 'c' %}{% break %}{% endif %}{% endfor %})J",
                   R"J({"items": ["a", "b", "c", "d"]})J"),
            "ac");
  EXPECT_EQ(render(R"J({% for i in range(3) %}{% for j in range(i) %}{{ i }}{{ j }})J"
                   R"J(,{% endfor %}{% endfor %})J"
                   R"J(|{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %})J"
                   R"J(|{% for k in {'x': 1, 'a': 2} %}{{ k }}{% endfor %})J"
                   R"J(|{% for c in 'hé' %}[{{ c }}]{% endfor %})J"),
            "10,20,21,|37|xa|[h][é]");
  EXPECT_EQ(render(R"J({% for n in tree recursive %}{{ n.n }}{{ loop.depth }}({{ loop(n.c) }})J"
                   R"J(){% endfor %})J",
                   R"J({"tree": [{"n": "x", "c": [{"n": "y", "c": []}]}, {"n": "z", "c": []}]})J"),
            "x1(y2())z1()");
  EXPECT_EQ(render(R"J({% for x in items %}{{ loop.changed(x[0]) }}{% endfor %})J"
                   R"J(|{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }})J"
                   R"J({{ c.next() }}{{ c.current }})J"
                   R"J(|{% set j = joiner('+') %}{{ j() }}1{{ j() }}2)J",
                   R"J({"items": ["ab", "ac", "b"]})J"),
            "TrueFalseTrue|abab|1+2");
  EXPECT_EQ(render(R"J({% for m in msgs %}{% if loop.previtem and loop.previtem.role != m.role )J"
                   R"J(%}<switch>{% endif %}{{ m.role }}{% if not loop.last and loop.nextitem.r)J"
                   R"J(ole == 'tool' %}>{% endif %}{% endfor %})J",
                   R"J({"msgs": [{"role": "user"}, {"role": "assistant"}, {"role": "tool"})J"
                   R"J(, {"role": "tool"}]})J"),
            "user<switch>assistant><switch>tool>tool");
}

TEST(JinjaTest, Macros) {
  EXPECT_EQ(
      render(R"J({% macro m(a, b=2, c='x') %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }})J"
             R"J(|{{ m(1, 3) }}|{{ m(1, c='y') }}|{{ m(a=5, b=6) }}|{{ m() }})J"),
      "1-2-x|1-3-x|1-2-y|5-6-x|-2-x");
  EXPECT_EQ(render(R"J({% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %})J"
                   R"J({{ m(1, 2, 3, x=4) }})J"),
            "1(2, 3){'x': 4}");
  EXPECT_EQ(render(R"J({% macro outer() %}[{{ caller() }}]{% endmacro %}{% call outer() %})J"
                   R"J(inner{% endcall %})J"
                   R"J(|{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endm)J"
                   R"J(acro %}{% call(item) each([1, 2]) %}<{{ item }}>{% endcall %})J"),
            "[inner]|<1><2>");
  EXPECT_EQ(render(R"J({% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1))J"
                   R"J(|int }}{% endif %}{% endmacro %}{{ fact(5) }})J"),
            "120");
  EXPECT_EQ(render(R"J({% macro m(a, b=a * 2) %}{{ b }}{% endmacro %}{{ m(3) }})J"
                   R"J(|{% macro show() %}{{ x }}{% endmacro %}{{ show() }}{% for x in [9] %}{{)J"
                   R"J( show() }}{% endfor %})J",
                   R"J({"x": "ctx"})J"),
            "6|ctxctx");
}

TEST(JinjaTest, AssignmentsAndNamespaces) {
  EXPECT_EQ(render(R"J({% set x %}block {{ 1 }}{% endset %}[{{ x }}]|{% set y )J"
                   R"J(| upper %}abc{% endset %}{{ y }}|{% set a, b = 1, 2 %}{{ a }}{{ b }})J"
                   R"J(|{% set t = 1, 2 %}{{ t }})J"),
            "[block 1]|ABC|12|(1, 2)");
  EXPECT_EQ(render(R"J({% set ns = namespace(count=0, found=false) %}{% for m in msgs %}{% set )J"
                   R"J(ns.count = ns.count + 1 %}{% if m.role == 'assistant' %}{% set ns.found )J"
                   R"J(= true %}{% endif %}{% endfor %}{{ ns.count }}{{ ns.found }})J"
                   R"J(|{{ ns.missing is defined }})J",
                   R"J({"msgs": [{"role": "user"}, {"role": "assistant"}]})J"),
            "2True|False");
  EXPECT_EQ(render(R"J({% filter upper %}hello {{ 'x' }}{% endfilter %})J"
                   R"J(|{% filter replace('a', 'b')|upper %}aaa{% endfilter %})J"
                   R"J(|{% with a = 5 %}{{ a }}{% endwith %}[{{ a }}])J"),
            "HELLO X|BBB|5[]");
  EXPECT_EQ(render(R"J({{ range(5)|list }}|{{ range(1, 5)|list }}|{{ range(5, 1, -2)|list }})J"
                   R"J(|{{ dict(a=1, b=2) }}|{{ namespace(a=1).a }})J"
                   R"J(|{{ namespace({'k': 2}, j=3).k }})J"),
            "[0, 1, 2, 3, 4]|[1, 2, 3, 4]|[5, 3]|{'a': 1, 'b': 2}|1|2");
}

TEST(JinjaTest, ScopesResolveLikeJinja) {
  EXPECT_EQ(render(R"J({% set x = 1 %}{% for i in [1, 2] %}{% set x = x + 1 %}{{ x }})J"
                   R"J({% endfor %}{{ x }})J"
                   R"J(|{% if true %}{% set y = 3 %}{% endif %}{{ y }})J"),
            "221|3");
  EXPECT_EQ(render(R"J({% macro m() %}{{ y }}{% endmacro %}{% set y = 1 %}{{ m() }})J"
                   R"J({% set y = 2 %}{{ m() }})J"),
            "12");
  EXPECT_EQ(render(R"J({% macro m() %}{{ items|length }}{% endmacro %}{{ m() }})J"
                   R"J(|{% set items = [1] %}{{ m() }})J",
                   R"J({"items": [1, 2, 3]})J"),
            "0|1");
  EXPECT_EQ(
      render(R"J({% for i in [1] %}[{{ x }}]{% endfor %}{% set x = 2 %})J"
             R"J(|{% for i in [1] %}[{{ x }}]{% endfor %}{% if true %}{% set x = 2 %}{% endif %})J",
             R"J({"x": 1})J"),
      "[]|[2]");
  EXPECT_EQ(render(R"J({{ items|length }}|{% set items = [1] %}{{ items|length }})J"
                   R"J(|{% macro m() %}{% if z is not defined %}{% set z = 5 %}{% endif %}{{ z )J"
                   R"J(}}{% endmacro %}{{ m() }})J",
                   R"J({"items": [1, 2, 3]})J"),
            "3|1|5");
}

TEST(JinjaTest, WhitespaceControl) {
  EXPECT_EQ(render(R"J(a
  {% if true %}
    b
  {% endif %}
c
)J"),
            "a\n    b\nc");
  EXPECT_EQ(render(R"J(a  {%- if true -%}  b  {%- endif -%}  c|{{- ' x ' -}}|  {{- 'y' }}  )J"),
            "abc| x |y  ");
  EXPECT_EQ(render(R"J(line1
{% for i in [1, 2] %}
  item {{ i }}
{% endfor %}
end)J"),
            "line1\n  item 1\n  item 2\nend");
  EXPECT_EQ(render(R"J(  {%+ if true %}x{% endif %})J"
                   R"J(|
  {# comment #}
z
  {%- if true %} w{% endif +%}
 q)J"),
            "  x|\nz w\n q");
  EXPECT_EQ(render(R"J({% raw %}{{ not parsed }}{% endraw %}|{# comment #})J"
                   R"J(|{{ 'a' }}{# c2 #}
{{ 'b' }}

)J"),
            "{{ not parsed }}||ab\n");
  EXPECT_EQ(render(R"J(a
b
{% if true %}
c
{% endif %}
)J"),
            "a\nb\nc\n");
}

TEST(JinjaTest, StrftimeNowUsesTheGivenClock) {
  EXPECT_EQ(render(R"J({{ strftime_now('%Y-%m-%d %H:%M:%S') }}|{{ strftime_now('%d %B %Y') }})J"
                   R"J(|{{ strftime_now('%A %a %b %j %p %I %%') }})J"),
            "2026-11-22 12:00:00|22 November 2026"
            "|Sunday Sun Nov 326 PM 12 %");
}

// ---------------------------------------------------------------------------------------------
// Beyond plain Jinja2: Hugging Face's additions, errors, limits.

TEST(JinjaTest, HuggingFaceExtensions) {
  // {% generation %} (Hugging Face's assistant-mask tag) renders its body.
  EXPECT_EQ(render("{% generation %}{{ 'reply' }}{% endgeneration %}"), "reply");
  // strftime_now without a fixed clock uses the current local time.
  RenderOptions live;
  const std::string year = render("{{ strftime_now('%Y') }}", "{}", live);
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  EXPECT_EQ(year, std::to_string(tm.tm_year + 1900));
  EXPECT_EQ(render("{{ strftime_now('%f|%z|%Z') }}"), "000000||");
}

TEST(JinjaTest, DictsKeepInsertionOrder) {
  const std::string context =
      R"({"d": {"zeta": 1, "alpha": 2, "mid": {"y": [3, 2.5], "b": null}}})";
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }};{% endfor %}{{ d|tojson }}", context),
            "zeta;alpha;mid;{\"zeta\": 1, \"alpha\": 2, \"mid\": {\"y\": [3, 2.5], \"b\": null}}");
}

TEST(JinjaTest, RaiseExceptionPassesTheMessageThrough) {
  EXPECT_EQ(error_of("{% if messages|length > 1 %}{{ raise_exception('Only one message, please!') "
                     "}}{% endif %}",
                     R"({"messages": [1, 2]})"),
            "Only one message, please!");
  EXPECT_EQ(error_of("{{ raise_exception('line one\nline two') }}"), "line one\nline two");
}

TEST(JinjaTest, ErrorsNameTheLine) {
  EXPECT_EQ(error_of("a\n{% if x %}\n{{ 1 + }}\n{% endif %}"),
            "template syntax error (line 3): unexpected 'end of print statement'");
  EXPECT_EQ(error_of("a\n{% for x in y %}\nb"),
            "template syntax error (line 3): Unexpected end of template. Jinja was looking for the "
            "following tags: 'endfor' or 'else'.");
  EXPECT_EQ(error_of("{% endif %}"),
            "template syntax error (line 1): Encountered unknown tag 'endif'.");
  EXPECT_EQ(error_of("{{ 'unterminated }}"),
            "template syntax error (line 1): unexpected char \"'\" at 3");
  EXPECT_EQ(error_of("{% break %}"), "template syntax error (line 1): 'break' outside loop");
  EXPECT_EQ(
      error_of("{% include 'x.jinja' %}"),
      "template syntax error (line 1): 'include' is not supported: a chat template cannot load "
      "other templates");
  EXPECT_EQ(error_of("ok\n\n{{ user.name }}"), "template error (line 3): 'user' is undefined");
  EXPECT_EQ(error_of("{{ d.a.b }}", R"({"d": {}})"),
            "template error (line 1): 'dict object' has no attribute 'a'");
  EXPECT_EQ(error_of("{{ 'a' + 1 }}"),
            "template error (line 1): can only concatenate str (not \"int\") to str");
  EXPECT_EQ(error_of("{{ x|tojson }}"),
            "template error (line 1): Object of type Undefined is not JSON serializable");
  EXPECT_EQ(error_of("{{ x|nosuchfilter }}"),
            "template error (line 1): No filter named 'nosuchfilter'.");
  EXPECT_EQ(error_of("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
            "template error (line 1): macro 'm' takes not more than 1 argument(s)");
  EXPECT_EQ(error_of("{{ range(200000)|length }}"),
            "template error (line 1): Range too big. The sandbox blocks ranges larger than "
            "MAX_RANGE (100000).");
  EXPECT_EQ(error_of("{{ 2 ** 64 }}"),
            "template error (line 1): integer overflow (Python would use a big integer)");
  EXPECT_EQ(error_of("{{ 1 // 0 }}"),
            "template error (line 1): integer division or modulo by zero");
  // An unknown filter in a branch that does not run is no error (as in Jinja2 3.x).
  EXPECT_EQ(render("{% if false %}{{ x|nosuchfilter }}{% endif %}ok"), "ok");
}

TEST(JinjaTest, HostileTemplatesHitLimits) {
  RenderOptions small = fixed_clock();
  small.limits.max_steps = 100000;
  small.limits.max_string_bytes = 1 << 20;
  EXPECT_NE(
      error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
               "{}", small)
          .find("ran too long"),
      std::string::npos);
  EXPECT_NE(error_of("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", "{}", small)
                .find("output is too long"),
            std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ "
                     "ns.s %}{% endfor %}",
                     "{}", small)
                .find("string too long"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 'x' * 100000000 }}", "{}", small).find("too long"), std::string::npos);
  EXPECT_NE(error_of("{{ [0] * 100000000 }}").find("list too long"), std::string::npos);
  // Unbounded recursion stops with an error, not a stack overflow.
  EXPECT_NE(error_of("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("recursion depth"),
            std::string::npos);
  EXPECT_NE(error_of("{% set l = [] %}{% set _ = l.append(l) %}{{ l }}").find("nesting too deep"),
            std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}")
                .find("nesting too deep"),
            std::string::npos);
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  EXPECT_NE(error_of(ifs).find("nesting too deep"), std::string::npos);
  // The limits are per render: the default ones let real work through.
  EXPECT_EQ(render("{% for i in range(20000) %}{% endfor %}{{ range(100000)|length }}"), "100000");
}

TEST(JinjaTest, TemplatesAreReusableAndIndependent) {
  const Template t(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ "
      "ns.n }}");
  EXPECT_EQ(t.render(Json::parse(R"({"messages": [1, 2, 3]})"), fixed_clock()), "3");
  const Template copy = t;
  EXPECT_EQ(copy.render(Json::parse(R"({"messages": []})"), fixed_clock()), "0");
  EXPECT_EQ(t.render(Json(), fixed_clock()), "0");  // a null context has no variables
  EXPECT_THROW(t.render(Json::parse("[1]"), fixed_clock()), Error);
}

TEST(JinjaTest, DateTimeParsing) {
  const DateTime t = DateTime::parse("2026-11-22T12:34:56.5");
  EXPECT_EQ(t.year, 2026);
  EXPECT_EQ(t.month, 11);
  EXPECT_EQ(t.day, 22);
  EXPECT_EQ(t.hour, 12);
  EXPECT_EQ(t.minute, 34);
  EXPECT_EQ(t.second, 56);
  EXPECT_EQ(t.microsecond, 500000);
  EXPECT_EQ(DateTime::parse("2026-01-02").day, 2);
  EXPECT_EQ(DateTime::parse("2026-01-02 03:04:05").hour, 3);
  for (const char* bad : {"", "2026", "2026-13-01T00:00:00", "2026-11-22T25:00:00",
                          "2026-11-22T12:00:00Z", "tomorrow"})
    EXPECT_THROW(DateTime::parse(bad), Error) << bad;
}

// ---------------------------------------------------------------------------------------------
// Real templates (reference data rendered by Hugging Face's apply_chat_template).

TEST(JinjaReferenceTest, RendersEveryCaseByteForByte) {
  MUSE_REQUIRE_REFERENCE(ref);
  const std::string dir = ref + "/templates/";
  const Json data = Json::parse(testing::read_file(dir + "chat-templates.json"));
  RenderOptions options;
  options.now = DateTime::parse(data.at("now").as_string());
  size_t checked = 0;
  for (const Json& c : data.at("cases").as_array()) {
    const std::string name = c.at("template").as_string() + " / " + c.at("case").as_string();
    const std::string source = testing::read_file(dir + c.at("template").as_string());
    ASSERT_FALSE(source.empty()) << name;
    std::string out, error;
    try {
      out = Template(source).render(c.at("context"), options);
    } catch (const Error& e) {
      error = e.what();
    }
    if (const Json* expected = c.find("expected")) {
      EXPECT_EQ(error, "") << name;
      EXPECT_EQ(out, expected->as_string()) << name;
    } else {
      EXPECT_EQ(error, c.at("error").as_string()) << name;
    }
    ++checked;
  }
  EXPECT_GT(checked, 0u);
}

TEST(JinjaReferenceTest, EveryTemplateRendersASingleUserMessage) {
  MUSE_REQUIRE_REFERENCE(ref);
  const std::string dir = ref + "/templates/";
  const Json data = Json::parse(testing::read_file(dir + "chat-templates.json"));
  Json single = Json::parse(R"({"messages": [{"role": "user", "content": "What is 17 * 23?"}],
                               "add_generation_prompt": true,
                               "bos_token": "<s>", "eos_token": "</s>"})");
  for (const Json& c : data.at("cases").as_array())
    if (c.at("case").as_string() == "single") single = c.at("context");
  RenderOptions options;
  options.now = DateTime::parse(data.at("now").as_string());
  DIR* d = opendir(dir.c_str());
  ASSERT_NE(d, nullptr);
  std::set<std::string> names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n.size() > 6 && n.substr(n.size() - 6) == ".jinja") names.insert(n);
  }
  closedir(d);
  EXPECT_GE(names.size(), 20u);
  for (const std::string& n : names) {
    std::string out;
    EXPECT_NO_THROW(out = Template(testing::read_file(dir + n)).render(single, options)) << n;
    EXPECT_NE(out.find("What is 17 * 23?"), std::string::npos) << n << ": " << out;
  }
}

TEST(JinjaReferenceTest, RendersQuickly) {
  MUSE_REQUIRE_REFERENCE(ref);
  const std::string dir = ref + "/templates/";
  const Json data = Json::parse(testing::read_file(dir + "chat-templates.json"));
  const Json* tools_case = nullptr;
  for (const Json& c : data.at("cases").as_array())
    if (c.at("case").as_string() == "tools" &&
        c.at("template").as_string() == "meta-llama-Llama-3.1-8B-Instruct.jinja")
      tools_case = &c;
  ASSERT_NE(tools_case, nullptr);
  const Template t(testing::read_file(dir + "meta-llama-Llama-3.1-8B-Instruct.jinja"));
  RenderOptions options = fixed_clock();
  const int reps = 200;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) t.render(tools_case->at("context"), options);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
      reps;
  EXPECT_LT(ms, 5.0) << "a render took " << ms << " ms";
}

}  // namespace
}  // namespace muse::jinja
