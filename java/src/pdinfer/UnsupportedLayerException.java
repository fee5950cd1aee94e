package pdinfer;

/** A weight file names a layer type or parameter value this kit does not implement. */
public class UnsupportedLayerException extends FormatException {
    public UnsupportedLayerException(String message) {
        super(message);
    }
}
