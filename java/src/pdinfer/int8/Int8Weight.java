package pdinfer.int8;

/**
 * An I8 Conv2d or Linear weight as stored (docs/FORMAT.md, section 1.2): the int8 levels, in the
 * weight's layout (O, ...), and the float32 scale of each output channel.
 */
public record Int8Weight(byte[] levels, float[] scale) {
}
