package pdinfer;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * Load every weight file named on standard input (one path a line) in one JVM and print one line
 * per file: {@code OK}, {@code REJECTED <message>} for a FormatException (or another
 * PdinferException), or {@code CRASH <exception>} for anything else, which is a reader bug.
 *
 *   java -cp BUILD pdinfer.Check [--no-verify] &lt; paths.txt
 *
 * {@code --no-verify} skips the checksums, to compare the checks below them with pdinfer's
 * (tests/test_hardening.py). Exits 0 unless the arguments are wrong or reading stdin fails.
 */
public final class Check {
    public static void main(String[] args) throws IOException {
        boolean verify = args.length == 0;
        if (args.length > 1 || (args.length == 1 && !args[0].equals("--no-verify"))) {
            System.err.println("usage: java -cp BUILD pdinfer.Check [--no-verify] < paths.txt");
            System.exit(2);
        }
        PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            out.println(verdict(Path.of(line), verify).replace('\n', ' '));
        }
        out.flush();
    }

    private static String verdict(Path file, boolean verify) {
        try {
            Graph.load(file, verify);
            return "OK";
        } catch (PdinferException e) {
            return "REJECTED " + e.getMessage();
        } catch (RuntimeException | StackOverflowError | OutOfMemoryError e) {
            return "CRASH " + e;
        }
    }
}
