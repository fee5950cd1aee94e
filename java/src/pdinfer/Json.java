package pdinfer;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A strict JSON parser (RFC 8259): no duplicate keys, no NaN or Infinity literals, no control
 * characters in strings, nesting depth at most MAX_DEPTH (a scalar is depth 0, `[]` depth 1).
 *
 * Values: Map (LinkedHashMap, key order kept), List, String, Long (an integer that fits) or
 * BigInteger (one that does not), Double (a number with a fraction or exponent; one beyond the
 * range of a double is an error), Boolean, NULL. Strings must be Unicode text: an escaped lone
 * surrogate is an error.
 */
public final class Json {
    public static final int MAX_DEPTH = 64;
    public static final Object NULL = new Object() {
        @Override
        public String toString() {
            return "null";
        }
    };

    private final String text;
    private final String what;
    private final String where;
    private int pos;

    private Json(String text, String what, String where) {
        this.text = text;
        this.what = what;
        this.where = where;
    }

    /** Parse `text` (the whole of it, surrounding whitespace allowed) or throw FormatException. */
    public static Object parse(String text, String what, String where) {
        Json parser = new Json(text, what, where);
        parser.skipWhitespace();
        Object value = parser.value(0);
        parser.skipWhitespace();
        if (parser.pos != text.length()) {
            throw parser.error("extra data after the JSON value");
        }
        return value;
    }

    private FormatException error(String message) {
        return new FormatException(where + ": " + what + " is not valid JSON: " + message
                + " at character " + pos);
    }

    private void skipWhitespace() {
        while (pos < text.length()) {
            char c = text.charAt(pos);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return;
            }
            pos++;
        }
    }

    private Object value(int depth) {
        if (pos >= text.length()) {
            throw error("unexpected end");
        }
        char c = text.charAt(pos);
        switch (c) {
            case '{':
                return object(depth + 1);
            case '[':
                return array(depth + 1);
            case '"':
                return string();
            case 't':
                return literal("true", Boolean.TRUE);
            case 'f':
                return literal("false", Boolean.FALSE);
            case 'n':
                return literal("null", NULL);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return number();
                }
                throw error("unexpected character '" + c + "'");
        }
    }

    private void enter(int depth) {
        if (depth > MAX_DEPTH) {
            throw new FormatException(where + ": " + what + " is nested deeper than " + MAX_DEPTH + " levels");
        }
    }

    private Map<String, Object> object(int depth) {
        enter(depth);
        Map<String, Object> map = new LinkedHashMap<>();
        pos++; // '{'
        skipWhitespace();
        if (peek('}')) {
            pos++;
            return map;
        }
        while (true) {
            skipWhitespace();
            if (!peek('"')) {
                throw error("expected a string key");
            }
            String key = string();
            skipWhitespace();
            expect(':');
            skipWhitespace();
            Object value = value(depth);
            if (map.containsKey(key)) {
                throw error("duplicate key '" + key + "'");
            }
            map.put(key, value);
            skipWhitespace();
            if (peek(',')) {
                pos++;
            } else {
                expect('}');
                return map;
            }
        }
    }

    private List<Object> array(int depth) {
        enter(depth);
        List<Object> list = new ArrayList<>();
        pos++; // '['
        skipWhitespace();
        if (peek(']')) {
            pos++;
            return list;
        }
        while (true) {
            skipWhitespace();
            list.add(value(depth));
            skipWhitespace();
            if (peek(',')) {
                pos++;
            } else {
                expect(']');
                return list;
            }
        }
    }

    private boolean peek(char c) {
        return pos < text.length() && text.charAt(pos) == c;
    }

    private void expect(char c) {
        if (!peek(c)) {
            throw error("expected '" + c + "'");
        }
        pos++;
    }

    private Object literal(String word, Object value) {
        if (!text.startsWith(word, pos)) {
            throw error("unexpected characters");
        }
        pos += word.length();
        return value;
    }

    private String string() {
        StringBuilder out = new StringBuilder();
        pos++; // opening quote
        while (true) {
            if (pos >= text.length()) {
                throw error("unterminated string");
            }
            char c = text.charAt(pos++);
            if (c == '"') {
                return unicodeText(out);
            }
            if (c < 0x20) {
                throw error("control character in a string");
            }
            if (c != '\\') {
                out.append(c);
                continue;
            }
            if (pos >= text.length()) {
                throw error("unterminated escape");
            }
            char e = text.charAt(pos++);
            switch (e) {
                case '"': out.append('"'); break;
                case '\\': out.append('\\'); break;
                case '/': out.append('/'); break;
                case 'b': out.append('\b'); break;
                case 'f': out.append('\f'); break;
                case 'n': out.append('\n'); break;
                case 'r': out.append('\r'); break;
                case 't': out.append('\t'); break;
                case 'u':
                    if (pos + 4 > text.length()) {
                        throw error("truncated \\u escape");
                    }
                    int code = 0;
                    for (int k = 0; k < 4; k++) {
                        int digit = Character.digit(text.charAt(pos++), 16);
                        if (digit < 0) {
                            throw error("invalid \\u escape");
                        }
                        code = code * 16 + digit;
                    }
                    out.append((char) code);
                    break;
                default:
                    throw error("invalid escape '\\" + e + "'");
            }
        }
    }

    /** The string, if it is Unicode text: an escaped lone surrogate ("\\ud800") is not. */
    private String unicodeText(StringBuilder chars) {
        for (int i = 0; i < chars.length(); i++) {
            char c = chars.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < chars.length() && Character.isLowSurrogate(chars.charAt(i + 1))) {
                i++;
            } else if (Character.isSurrogate(c)) {
                throw new FormatException(where + ": " + what + " escapes a lone UTF-16 surrogate, which is not "
                        + "Unicode text");
            }
        }
        return chars.toString();
    }

    private Object number() {
        int start = pos;
        if (peek('-')) {
            pos++;
        }
        if (peek('0')) {
            pos++;
        } else if (!digits()) {
            throw error("invalid number");
        }
        boolean integral = true;
        if (peek('.')) {
            pos++;
            integral = false;
            if (!digits()) {
                throw error("invalid number");
            }
        }
        if (peek('e') || peek('E')) {
            pos++;
            integral = false;
            if (peek('+') || peek('-')) {
                pos++;
            }
            if (!digits()) {
                throw error("invalid number");
            }
        }
        String literal = text.substring(start, pos);
        if (!integral) {
            double value = Double.parseDouble(literal);
            if (Double.isInfinite(value)) {
                throw error(literal + " is out of the range of a double");
            }
            return value;
        }
        BigInteger big = new BigInteger(literal);
        return big.bitLength() < 64 ? (Object) big.longValue() : big;
    }

    private boolean digits() {
        int start = pos;
        while (pos < text.length() && text.charAt(pos) >= '0' && text.charAt(pos) <= '9') {
            pos++;
        }
        return pos > start;
    }
}
