#!/usr/bin/env python3
"""Lines per function definition in C++ sources, longest first.

usage: scripts/function-lengths.py [--over N] FILE_OR_DIR...

A function is a brace block at namespace or class scope whose head (the text since the
previous ';', '{' or '}') has a parameter list and no top-level '='; its length runs from
the first line of that head to the closing brace. Lambdas and local classes count towards
the function that holds them. Comments, strings and preprocessor lines are ignored.
"""
import os
import re
import sys


def strip(text):
    """Comments and string/char literals blanked, newlines kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append('\n' * text.count('\n', i, j))
            i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(')' + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append('""' + '\n' * text.count('\n', i, j))
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return '\n'.join('' if l.lstrip().startswith('#') else l for l in ''.join(out).split('\n'))


def top_level(head):
    """The head with (...), <...> contents removed."""
    depth, out = 0, []
    for c in head:
        if c == '(':
            depth += 1
            if depth == 1:
                out.append('(')
        elif c == ')':
            depth -= 1
            if depth == 0:
                out.append(')')
        elif depth == 0:
            out.append(c)
    return ''.join(out)


def functions(path):
    text = strip(open(path, encoding='utf-8', errors='replace').read())
    stack = []  # per open brace: (is_function_or_inside_one, start_line, name)
    head_start = 0
    results = []
    for i, c in enumerate(text):
        if c in ';{}':
            if c == '{':
                inside = any(s[0] for s in stack)
                head = text[head_start:i]
                flat = top_level(head)
                is_fn = (not inside and '(' in flat and '=' not in flat.replace('operator=', '')
                         and not re.search(r'\b(namespace|class|struct|enum|union)\b', flat))
                first = head_start + (len(head) - len(head.lstrip()))
                line = text.count('\n', 0, first) + 1
                name = re.sub(r'\s+', ' ', flat.split('(')[0]).strip().split(' ')[-1] if is_fn else ''
                stack.append((is_fn or inside, line, name, is_fn))
            elif c == '}' and stack:
                fn, line, name, is_fn = stack.pop()
                if is_fn:
                    results.append((text.count('\n', 0, i) + 1 - line + 1, path, line, name))
            head_start = i + 1
    return results


def main(argv):
    over = 0
    if argv[:1] == ['--over']:
        over, argv = int(argv[1]), argv[2:]
    files = []
    for a in argv:
        if os.path.isdir(a):
            for root, _, names in os.walk(a):
                files += [os.path.join(root, f) for f in names if f.endswith(('.cpp', '.h', '.cu'))]
        else:
            files.append(a)
    rows = sorted((r for f in sorted(files) for r in functions(f)), reverse=True)
    for n, path, line, name in rows:
        if n > over:
            print(f'{n:5d}  {path}:{line}  {name}')


if __name__ == '__main__':
    main(sys.argv[1:])
