// Registers every cpu kernel of ours with tfjs (imported for its side effect by src/index.ts).
