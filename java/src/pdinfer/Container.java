package pdinfer;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The .pdw container (docs/FORMAT.md, sections 1 and 4): string metadata and tensors of the
 * types in {@link #ELEMENT_BYTES} (F32, F16, BF16, I8), handed out widened to float32.
 *
 * Every rule pdinfer.format.read_container checks is checked here, in the same order, including
 * the whole-file checksum `file_sha256` whenever it is present, hashed in one streaming pass.
 * Nothing is memory-mapped and the data section is never held whole, so a file (a golden bundle)
 * may be of any size: `tensor(name)` reads one tensor with a positional read, after checking that
 * the file is still the one that was checked (same file key, size and modification time).
 */
public final class Container {
    public static final int HEADER_ALIGN = 64;
    public static final long MAX_HEADER_BYTES = 16L << 20;
    public static final int MAX_TENSOR_RANK = 4;
    public static final String FORMAT_PREFIX = "pdinfer";
    public static final String FILE_CHECKSUM = "file_sha256";
    public static final String DATA_CHECKSUM = "data_sha256";
    private static final int HASH_BLOCK = 1 << 20; // bytes hashed per read in the checksum pass
    /** The tensor types (safetensors dtype) and their element sizes in bytes. */
    public static final Map<String, Integer> ELEMENT_BYTES = Map.of("F32", 4, "F16", 2, "BF16", 2, "I8", 1);

    public final String path;
    public final Map<String, String> metadata;
    public final String dataSha256; // SHA-256 of the data section, computed (the weights' identity)
    public final boolean headerVerified; // a whole-file checksum (header and data) was verified
    private final Path file;
    private final Identity identity; // the file as it was checked
    private final long dataBegin; // file offset of the data section
    private final Map<String, Span> spans; // tensor name -> where it lies in the data section, in data order

    private record Span(String name, long begin, long end, int[] shape, String dtype) {
    }

    /** What must not change between checking a file and reading from it. */
    private record Identity(Object fileKey, long size, FileTime modified) {
        static Identity of(Path file) throws IOException {
            BasicFileAttributes attributes = Files.readAttributes(file, BasicFileAttributes.class);
            return new Identity(attributes.fileKey(), attributes.size(), attributes.lastModifiedTime());
        }
    }

    private Container(Path file, Identity identity, Map<String, String> metadata, String dataSha256,
                      boolean headerVerified, long dataBegin, Map<String, Span> spans) {
        this.path = file.toString();
        this.file = file;
        this.identity = identity;
        this.metadata = metadata;
        this.dataSha256 = dataSha256;
        this.headerVerified = headerVerified;
        this.dataBegin = dataBegin;
        this.spans = spans;
    }

    /** Tensor names in data order. */
    public List<String> names() {
        return new ArrayList<>(spans.keySet());
    }

    public boolean has(String name) {
        return spans.containsKey(name);
    }

    public int[] shape(String name) {
        return span(name).shape.clone();
    }

    /** The stored type of one tensor: a key of {@link #ELEMENT_BYTES}. */
    public String dtype(String name) {
        return span(name).dtype;
    }

    /**
     * One tensor's values as float32, read from the file now (FormatException if the file changed
     * since it was checked): F32 as stored, F16 and BF16 widened exactly, I8 as the integers q (the
     * caller applies the scale: docs/KERNELS.md, "Compressed weights").
     */
    public Tensor tensor(String name) {
        Span span = span(name);
        long length = span.end - span.begin;
        if (length > Integer.MAX_VALUE - 8) {
            throw new FormatException(path + ": tensor '" + name + "' is " + length + " bytes; this reader reads "
                    + "tensors of at most 2 GiB");
        }
        ByteBuffer bytes;
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            checkUnchanged();
            bytes = readAt(channel, dataBegin + span.begin, (int) length, path);
            checkUnchanged();
        } catch (IOException e) {
            throw new FormatException(path + ": cannot read tensor '" + name + "': " + e.getMessage());
        }
        float[] values = new float[(int) (length / ELEMENT_BYTES.get(span.dtype))];
        switch (span.dtype) {
            case "F32" -> bytes.asFloatBuffer().get(values);
            case "BF16" -> {
                for (int i = 0; i < values.length; i++) {
                    values[i] = Float.intBitsToFloat((bytes.getShort(2 * i) & 0xFFFF) << 16);
                }
            }
            case "F16" -> {
                for (int i = 0; i < values.length; i++) {
                    values[i] = halfToFloat(bytes.getShort(2 * i) & 0xFFFF);
                }
            }
            default -> { // I8
                for (int i = 0; i < values.length; i++) {
                    values[i] = bytes.get(i);
                }
            }
        }
        return new Tensor(span.shape, values);
    }

    /** An IEEE binary16 value (its 16 bits) as the float32 of the same value (exact). */
    static float halfToFloat(int bits) {
        int sign = (bits >> 15) << 31;
        int exponent = (bits >> 10) & 0x1F;
        int mantissa = bits & 0x3FF;
        if (exponent == 0) { // zero or subnormal: mantissa * 2^-24, exact in float32
            return Float.intBitsToFloat(sign | Float.floatToRawIntBits(mantissa * 0x1p-24f));
        }
        if (exponent == 0x1F) { // infinity or NaN
            return Float.intBitsToFloat(sign | 0x7F800000 | (mantissa << 13));
        }
        return Float.intBitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }

    private void checkUnchanged() throws IOException {
        if (!Identity.of(file).equals(identity)) {
            throw new FormatException(path + ": the file was changed or replaced after it was checked (size, "
                    + "modification time or file key differ); open it again");
        }
    }

    /** Exactly {@code length} bytes at {@code position}, little-endian, or FormatException if the file is shorter now. */
    private static ByteBuffer readAt(FileChannel channel, long position, int length, String where) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocate(length).order(ByteOrder.LITTLE_ENDIAN);
        while (buffer.hasRemaining()) {
            if (channel.read(buffer, position + buffer.position()) < 0) {
                throw new FormatException(where + ": file changed while being read (no byte "
                        + (position + buffer.position()) + " any more)");
            }
        }
        return buffer.flip();
    }

    private Span span(String name) {
        Span span = spans.get(name);
        if (span == null) {
            throw new FormatException(path + ": no tensor named '" + name + "'");
        }
        return span;
    }

    /** Throw unless the metadata names {@code formatName} at {@code version} and has every key. */
    public void checkMetadata(String formatName, String version, List<String> keys) {
        checkMetadata(formatName, List.of(version), keys);
    }

    /** Throw unless the metadata names {@code formatName} at one of {@code versions} and has every key. */
    public void checkMetadata(String formatName, List<String> versions, List<String> keys) {
        if (!formatName.equals(metadata.get("format"))) {
            throw new FormatException(path + ": metadata 'format' is " + metadata.get("format") + ", expected '"
                    + formatName + "'");
        }
        String version = metadata.get("format_version");
        if (version == null || !versions.contains(version)) { // List.of(...).contains(null) throws
            throw new FormatException(path + ": " + formatName + " format version " + metadata.get("format_version")
                    + " is not supported (this reader reads version" + (versions.size() > 1 ? "s " : " ")
                    + String.join(" and ", versions) + ")");
        }
        for (String key : keys) {
            if (!metadata.containsKey(key)) {
                throw new FormatException(path + ": metadata key '" + key + "' is missing");
            }
        }
    }

    /** Read and check a weight file or golden bundle; verifies file_sha256 and data_sha256 when asked. */
    public static Container read(Path file, boolean verifyChecksum) {
        return read(file, verifyChecksum, "pdinfer weight file");
    }

    /**
     * Read and check a container file; verifies the declared file_sha256 and data_sha256 when asked.
     * {@code kind} names the expected file in the error for a file that is no container at all.
     */
    public static Container read(Path file, boolean verifyChecksum, String kind) {
        String where = file.toString();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            Identity before = Identity.of(file);
            Container container = read(file, channel, before, verifyChecksum, kind);
            if (!Identity.of(file).equals(before)) {
                throw new FormatException(where + ": file changed while it was being checked");
            }
            return container;
        } catch (IOException e) {
            throw new FormatException(where + ": cannot read file: " + e.getMessage());
        }
    }

    private static Container read(Path file, FileChannel channel, Identity identity, boolean verifyChecksum,
                                  String kind) throws IOException {
        String where = file.toString();
        String alien = where + ": not a " + kind + " (";
        long fileSize = channel.size();
        if (fileSize < 8) {
            throw new FormatException(alien + "file is " + fileSize + " bytes, too short for a header length)");
        }
        byte[] prefix = new byte[8];
        readAt(channel, 0, 8, where).get(prefix);
        long headerLength = ByteBuffer.wrap(prefix).order(ByteOrder.LITTLE_ENDIAN).getLong(0); // unsigned: "negative" is >= 2^63
        if (headerLength < 0 || headerLength > MAX_HEADER_BYTES) {
            throw new FormatException(alien + "its first 8 bytes give a header length of "
                    + Long.toUnsignedString(headerLength) + ", which exceeds the " + MAX_HEADER_BYTES
                    + "-byte limit)");
        }
        if (8 + headerLength > fileSize) {
            throw new FormatException(where + ": header length " + headerLength + " runs past the end of the "
                    + fileSize + "-byte file (truncated?)");
        }
        long dataBegin = 8 + headerLength;
        byte[] headerBytes = new byte[(int) headerLength];
        readAt(channel, 8, (int) headerLength, where).get(headerBytes);
        int jsonLength = headerBytes.length;
        while (jsonLength > 0 && headerBytes[jsonLength - 1] == ' ') {
            jsonLength--;
        }
        if (jsonLength < 1 || headerBytes[0] != '{') {
            throw new FormatException(alien + "the header after the 8-byte length is not a JSON object)");
        }
        if (jsonLength < 2 || headerBytes[jsonLength - 1] != '}') {
            throw new FormatException(where + ": header is not a JSON object followed only by spaces");
        }
        Object parsed = Json.parse(decodeUtf8(headerBytes, jsonLength, where), "header", where);
        Map<String, Object> header = new LinkedHashMap<>(asMap(parsed));
        long dataSize = fileSize - dataBegin;

        if (!header.containsKey("__metadata__")) {
            throw new FormatException(alien + "the header has no __metadata__: a safetensors file without "
                    + "pdinfer's metadata?)");
        }
        Object meta = header.remove("__metadata__");
        Map<String, String> metadata = new LinkedHashMap<>();
        if (!(meta instanceof Map)) {
            throw new FormatException(where + ": __metadata__ is not an object or holds non-string values");
        }
        for (Map.Entry<String, Object> e : asMap(meta).entrySet()) {
            if (!(e.getValue() instanceof String)) {
                throw new FormatException(where + ": __metadata__ is not an object or holds non-string values");
            }
            metadata.put(e.getKey(), (String) e.getValue());
        }
        String formatName = metadata.get("format");
        if (formatName == null || !(formatName.equals(FORMAT_PREFIX) || formatName.startsWith(FORMAT_PREFIX + "-"))) {
            throw new FormatException(alien + "metadata 'format' is " + (formatName == null ? "None" : "'"
                    + formatName + "'") + ", not '" + FORMAT_PREFIX + "' or " + FORMAT_PREFIX + "-*)");
        }
        if (dataBegin % HEADER_ALIGN != 0) {
            throw new FormatException(where + ": data section starts at byte " + dataBegin
                    + ", not a multiple of " + HEADER_ALIGN);
        }

        List<Span> sorted = new ArrayList<>();
        for (Map.Entry<String, Object> e : header.entrySet()) {
            sorted.add(tensorEntry(e.getKey(), e.getValue(), dataSize, where));
        }
        sorted.sort(Comparator.comparingLong(Span::begin).thenComparingLong(Span::end).thenComparing(Span::name));
        Map<String, Span> spans = new LinkedHashMap<>();
        long expectedBegin = 0;
        for (Span span : sorted) {
            if (span.begin != expectedBegin) {
                String relation = span.begin < expectedBegin ? "overlaps the previous tensor" : "leaves a gap before it";
                throw new FormatException(where + ": tensor '" + span.name + "' at byte " + span.begin + " " + relation
                        + " (expected it at byte " + expectedBegin + ")");
            }
            spans.put(span.name, span);
            expectedBegin = span.end;
        }
        if (expectedBegin != dataSize) {
            throw new FormatException(where + ": " + (dataSize - expectedBegin) + " bytes after the last tensor "
                    + "(tensors cover " + expectedBegin + " of " + dataSize + " data bytes)");
        }

        String declaredFile = verifyChecksum ? metadata.get(FILE_CHECKSUM) : null;
        MessageDigest fileDigest = declaredFile == null ? null : fileDigest(prefix, headerBytes, declaredFile, where);
        MessageDigest dataDigest = sha256();
        for (long offset = dataBegin; offset < fileSize; offset += HASH_BLOCK) {
            ByteBuffer block = readAt(channel, offset, (int) Math.min(HASH_BLOCK, fileSize - offset), where);
            if (fileDigest != null) {
                fileDigest.update(block.duplicate());
            }
            dataDigest.update(block);
        }
        if (fileDigest != null) {
            String fileHex = HexFormat.of().formatHex(fileDigest.digest());
            if (!fileHex.equals(declaredFile)) {
                throw new FormatException(where + ": whole-file SHA-256 (header and data) mismatch: the file says "
                        + declaredFile + ", its bytes hash to " + fileHex + " (the file was changed or "
                        + "corrupted after it was written)");
            }
        }
        String digest = HexFormat.of().formatHex(dataDigest.digest());
        String declared = metadata.get(DATA_CHECKSUM);
        if (verifyChecksum && declared != null && !declared.equals(digest)) {
            throw new FormatException(where + ": data checksum mismatch: the file says " + declared
                    + ", the data hashes to " + digest + " (corrupted data section)");
        }
        return new Container(file, identity, Collections.unmodifiableMap(metadata), digest, declaredFile != null,
                dataBegin, Collections.unmodifiableMap(spans));
    }

    /**
     * A SHA-256 fed with the length prefix and the header, the 64 hex digits of {@code declared}
     * replaced by '0': the whole-file checksum once the data section is added. The header must
     * hold the bytes "file_sha256":"&lt;declared&gt;" exactly once.
     */
    private static MessageDigest fileDigest(byte[] prefix, byte[] header, String declared, String where) {
        if (!declared.matches("[0-9a-f]{64}")) {
            throw new FormatException(where + ": metadata '" + FILE_CHECKSUM + "' must be 64 lowercase hex digits, got '"
                    + declared + "'");
        }
        byte[] needle = ("\"" + FILE_CHECKSUM + "\":\"" + declared + "\"").getBytes(StandardCharsets.US_ASCII);
        List<Integer> found = new ArrayList<>();
        for (int i = 0; i + needle.length <= header.length; i++) {
            if (Arrays.equals(header, i, i + needle.length, needle, 0, needle.length)) {
                found.add(i);
            }
        }
        if (found.size() != 1) {
            throw new FormatException(where + ": the header must hold the bytes \"" + FILE_CHECKSUM
                    + "\":\"<64 hex>\" exactly once (unescaped, no spaces), found them " + found.size() + " times");
        }
        int digits = found.get(0) + FILE_CHECKSUM.length() + 4; // after '"file_sha256":"', in the header
        MessageDigest digest = sha256();
        digest.update(prefix);
        digest.update(header, 0, digits);
        digest.update("0".repeat(64).getBytes(StandardCharsets.US_ASCII));
        digest.update(header, digits + 64, header.length - digits - 64);
        return digest;
    }

    private static Span tensorEntry(String name, Object value, long dataSize, String where) {
        String prefix = where + ": tensor '" + name + "'";
        if (!(value instanceof Map) || !asMap(value).keySet().equals(java.util.Set.of("dtype", "shape", "data_offsets"))) {
            throw new FormatException(prefix + " must have exactly dtype, shape and data_offsets");
        }
        Map<String, Object> entry = asMap(value);
        Object dtype = entry.get("dtype");
        if (!(dtype instanceof String) || !ELEMENT_BYTES.containsKey(dtype)) {
            throw new FormatException(prefix + " has dtype " + dtype + "; supported: 'F32', 'F16', 'BF16', 'I8'");
        }
        Object shapeValue = entry.get("shape");
        if (!(shapeValue instanceof List) || ((List<?>) shapeValue).isEmpty()
                || ((List<?>) shapeValue).size() > MAX_TENSOR_RANK) {
            throw new FormatException(prefix + " has invalid shape " + shapeValue + " (1 to " + MAX_TENSOR_RANK
                    + " dimensions, each >= 1)");
        }
        List<?> dims = (List<?>) shapeValue;
        BigInteger bytes = BigInteger.valueOf(ELEMENT_BYTES.get(dtype));
        for (Object d : dims) {
            if (!(d instanceof Long || d instanceof BigInteger) || signum(d) < 1) {
                throw new FormatException(prefix + " has invalid shape " + shapeValue + " (1 to "
                        + MAX_TENSOR_RANK + " dimensions, each >= 1)");
            }
            bytes = bytes.multiply(d instanceof Long ? BigInteger.valueOf((Long) d) : (BigInteger) d);
        }
        Object offsetsValue = entry.get("data_offsets");
        if (!(offsetsValue instanceof List) || ((List<?>) offsetsValue).size() != 2
                || !((List<?>) offsetsValue).stream().allMatch(o -> o instanceof Long || o instanceof BigInteger)) {
            throw new FormatException(prefix + " has invalid data_offsets " + offsetsValue);
        }
        List<?> offsets = (List<?>) offsetsValue;
        if (!(offsets.get(0) instanceof Long && offsets.get(1) instanceof Long)) {
            throw new FormatException(prefix + " data_offsets " + offsetsValue + " lie outside the " + dataSize
                    + "-byte data section");
        }
        long begin = (Long) offsets.get(0);
        long end = (Long) offsets.get(1);
        if (!(0 <= begin && begin <= end && end <= dataSize)) {
            throw new FormatException(prefix + " data_offsets " + offsetsValue + " lie outside the " + dataSize
                    + "-byte data section");
        }
        if (!bytes.equals(BigInteger.valueOf(end - begin))) {
            throw new FormatException(prefix + " has " + (end - begin) + " bytes but shape " + shapeValue
                    + " needs " + bytes);
        }
        // Every dimension now fits an int: their product times 4 is at most the data size.
        int[] shape = dims.stream().mapToInt(d -> (int) (long) (Long) d).toArray();
        return new Span(name, begin, end, shape, (String) dtype);
    }

    private static int signum(Object integer) {
        return integer instanceof Long ? Long.signum((Long) integer) : ((BigInteger) integer).signum();
    }

    private static String decodeUtf8(byte[] bytes, int length, String where) {
        try {
            CharBuffer chars = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes, 0, length));
            return chars.toString();
        } catch (CharacterCodingException e) {
            throw new FormatException(where + ": header is not valid UTF-8 (" + e + ")");
        }
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JVM", e);
        }
    }

    /** Lowercase hex SHA-256 of a whole file. */
    public static String fileSha256(Path file) {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            MessageDigest digest = sha256();
            ByteBuffer block = ByteBuffer.allocate(HASH_BLOCK);
            while (channel.read(block) >= 0) {
                block.flip();
                digest.update(block);
                block.clear();
            }
            return HexFormat.of().formatHex(digest.digest());
        } catch (IOException e) {
            throw new FormatException(file + ": cannot read file: " + e.getMessage());
        }
    }

    /** A parsed JSON object (Json.parse gives Map&lt;String, Object&gt;) as such. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> asMap(Object value) {
        return (Map<String, Object>) value;
    }
}
