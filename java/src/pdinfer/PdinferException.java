package pdinfer;

/** Base class of every error this kit raises on purpose (mirrors pdinfer.errors.PdinferError). */
public class PdinferException extends RuntimeException {
    public PdinferException(String message) {
        super(message);
    }
}
