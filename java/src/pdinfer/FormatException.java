package pdinfer;

/** A weight or golden file is malformed, truncated, corrupted or inconsistent. */
public class FormatException extends PdinferException {
    public FormatException(String message) {
        super(message);
    }
}
